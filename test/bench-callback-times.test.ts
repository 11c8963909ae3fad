// The benchmark tells JavaScript that runs long by itself from a callback that a
// garbage-collection pause or a wait for a core held up.
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from '@jest/globals';
import { CallbackTimer, mainCpuWithin, summarizeCallbacks } from '../bench/callback-times';

describe('summarizeCallbacks', () => {
  it('bounds the JavaScript in each long callback by its time without the GC pauses inside it and by the CPU times meanwhile', () => {
    const times = summarizeCallbacks(
      {
        count: 1000,
        longest: 9,
        kept: [
          { start: 100, end: 109, cpu: 9, kind: 'Timeout' }, // 9 ms, 6 of them a pause: 3 ms of JavaScript at most
          { start: 200, end: 207, cpu: 7, kind: 'Immediate' }, // 7 ms, no pause, busy throughout
          { start: 300, end: 308, cpu: 1.5, kind: 'Object' }, // 8 ms on the clock, but the process ran 1.5 ms: it waited for a core
          { start: 400, end: 402, cpu: 2, kind: 'Object' }, // short, with half a pause that began before it
          { start: 600, end: 608, cpu: 8, mainCpu: { cpu: 2.5, apart: 8.6 }, kind: 'Promise' }, // the process busy, but its other threads: the main thread ran 2.5 ms at most
        ],
        pauses: [
          [101, 107],
          [399, 401],
          [500, 520], // inside no callback (between two)
        ],
      },
      5,
    );
    expect(times).toEqual({
      count: 1000,
      longest: 9,
      longestGc: 6,
      longestCpu: 9,
      longestMainCpu: undefined,
      longestKind: 'Timeout',
      over: 4,
      longestRunning: 7,
      longestRunningKind: 'Immediate',
      longestRunningReadingsApart: undefined,
      overRunning: 1,
    });
  });

  it("says how far apart the main thread's readings were when they are what bounds the longest-running callback", () => {
    const times = summarizeCallbacks(
      { count: 5, longest: 9, kept: [{ start: 0, end: 9, cpu: 9, mainCpu: { cpu: 6, apart: 12 }, kind: 'Object' }], pauses: [] },
      5,
    );
    expect(times).toMatchObject({ longestMainCpu: 6, longestRunning: 6, longestRunningReadingsApart: 12, overRunning: 1 });
  });

  it('with no callback long enough to keep, the longest is the longest seen and nothing is over', () => {
    expect(summarizeCallbacks({ count: 10, longest: 0.4, kept: [], pauses: [[0, 3]] }, 5)).toEqual({
      count: 10,
      longest: 0.4,
      longestGc: 0,
      longestCpu: 0,
      longestMainCpu: undefined,
      longestKind: '',
      over: 0,
      longestRunning: 0.4,
      longestRunningKind: '',
      longestRunningReadingsApart: undefined,
      overRunning: 0,
    });
  });
});

describe('mainCpuWithin', () => {
  // [before, after, CPU ms]: a reading every 1 ms, the main thread running half of each.
  const readings = new Float64Array([10, 10.1, 100, 11, 11.1, 100.5, 12, 12.1, 101, 13, 13.1, 101.5, 14, 14.1, 102]);

  it('gives what the main thread ran between the last reading ended before the span and the first begun after it', () => {
    expect(mainCpuWithin(readings, 11.5, 12.9)).toEqual({ cpu: 101.5 - 100.5, apart: 13 - 11.1 });
    // A reading under way at the span's edge does not bracket it: the next one out does.
    expect(mainCpuWithin(readings, 11.05, 13.05)).toEqual({ cpu: 102 - 100, apart: 14 - 10.1 });
  });

  it('gives nothing for a span the readings do not bracket', () => {
    expect(mainCpuWithin(readings, 9, 12)).toBeUndefined();
    expect(mainCpuWithin(readings, 12.5, 14.05)).toBeUndefined();
    expect(mainCpuWithin(new Float64Array(0), 1, 2)).toBeUndefined();
  });
});

describe('CallbackTimer', () => {
  it('times a timer callback that keeps the thread busy as one long callback', async () => {
    const timer = new CallbackTimer(5);
    await timer.ready;
    await new Promise<void>((resolve) =>
      setTimeout(() => {
        const until = performance.now() + 12;
        while (performance.now() < until) {
          // busy: no break for the event loop
        }
        resolve();
      }, 1),
    );
    await new Promise((resolve) => setImmediate(resolve));
    const times = await timer.stop();
    expect(times.count).toBeGreaterThan(1);
    expect(times.longest).toBeGreaterThanOrEqual(12);
    expect(times.over).toBeGreaterThanOrEqual(1);
    expect(times.longestCpu).toBeGreaterThan(0);
    expect(times.longestKind).toBe('Timeout');
    expect(times.longestRunning).toBeGreaterThan(0);
  });

  it("does not count another thread's CPU time as the main thread's", async () => {
    // Another thread spins while a callback of the main thread sleeps: the process is busy
    // throughout, the main thread is not.
    const spinner = new Worker('const until = Date.now() + 60; while (Date.now() < until);', { eval: true });
    // Listened for at once: on a busy machine it may be done before the timing below is.
    const spinnerExited = new Promise((resolve) => spinner.once('exit', resolve));
    const timer = new CallbackTimer(5);
    await timer.ready;
    await new Promise<void>((resolve) =>
      setTimeout(() => {
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 30);
        resolve();
      }, 1),
    );
    await new Promise((resolve) => setImmediate(resolve));
    const times = await timer.stop();
    await spinnerExited;
    expect(times.longest).toBeGreaterThanOrEqual(30);
    expect(times.longestMainCpu).toBeDefined();
    expect(times.longestMainCpu!).toBeLessThan(10);
    expect(times.longestRunning).toBeLessThan(10);
  });
});
