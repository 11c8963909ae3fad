// The benchmark's CPU figures (a target's main thread, PostgreSQL's processes) come from
// /proc's stat lines; a command name may hold spaces and parentheses.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from '@jest/globals';
import { statTimes } from '../bench/proc-stat';

describe('statTimes', () => {
  it('reads ppid, own and children’s times in µs, whatever the command name holds', () => {
    const line = '4242 (node (worker) x) S 17 4242 17 0 -1 4194560 100 0 0 0 250 31 7 3 20 0 11 0 1000 1 1';
    expect(statTimes(line)).toEqual({ ppid: 17, ownUs: 2_810_000, childrenUs: 100_000 });
  });

  it('reads this process’s main thread: its own time grows as it works', () => {
    const read = () => statTimes(readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8'));
    const before = read();
    const started = process.cpuUsage();
    // Works until the kernel has counted 20 ms of this thread's own time (two clock ticks), for at
    // most 5 s. Waiting for the process's CPU time instead could end early: it counts the worker's
    // other threads too (V8's helpers), which a busy machine lets run meanwhile.
    const deadline = Date.now() + 5_000;
    let after = read();
    while (after.ownUs - before.ownUs < 20_000 && Date.now() < deadline) {
      const until = process.cpuUsage(started).user + 1_000;
      while (process.cpuUsage(started).user < until);
      after = read();
    }
    expect(before.ppid).toBe(process.ppid);
    expect(after.ownUs - before.ownUs).toBeGreaterThanOrEqual(20_000);
  });
});
