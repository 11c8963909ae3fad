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
    // 60 ms of this thread's CPU time (six clock ticks), however busy the machine is.
    while (process.cpuUsage(started).user < 60_000);
    const after = read();
    expect(before.ppid).toBe(process.ppid);
    expect(after.ownUs - before.ownUs).toBeGreaterThanOrEqual(20_000);
  });
});
