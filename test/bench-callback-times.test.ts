// The benchmark tells JavaScript that runs long by itself from a callback that a
// garbage-collection pause or a wait for a core held up.
import { describe, expect, it } from '@jest/globals';
import { CallbackTimer, summarizeCallbacks } from '../bench/callback-times';

describe('summarizeCallbacks', () => {
  it('bounds the JavaScript in each long callback by its time without the GC pauses inside it and by the CPU time meanwhile', () => {
    const times = summarizeCallbacks(
      {
        count: 1000,
        longest: 9,
        kept: [
          { start: 100, end: 109, cpu: 9, kind: 'Timeout' }, // 9 ms, 6 of them a pause: 3 ms of JavaScript at most
          { start: 200, end: 207, cpu: 7, kind: 'Immediate' }, // 7 ms, no pause, busy throughout
          { start: 300, end: 308, cpu: 1.5, kind: 'Object' }, // 8 ms on the clock, but the process ran 1.5 ms: it waited for a core
          { start: 400, end: 402, cpu: 2, kind: 'Object' }, // short, with half a pause that began before it
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
      longestKind: 'Timeout',
      over: 3,
      longestRunning: 7,
      longestRunningKind: 'Immediate',
      overRunning: 1,
    });
  });

  it('with no callback long enough to keep, the longest is the longest seen and nothing is over', () => {
    expect(summarizeCallbacks({ count: 10, longest: 0.4, kept: [], pauses: [[0, 3]] }, 5)).toEqual({
      count: 10,
      longest: 0.4,
      longestGc: 0,
      longestCpu: 0,
      longestKind: '',
      over: 0,
      longestRunning: 0.4,
      longestRunningKind: '',
      overRunning: 0,
    });
  });
});

describe('CallbackTimer', () => {
  it('times a timer callback that keeps the thread busy as one long callback', async () => {
    const timer = new CallbackTimer(5);
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
    const times = timer.stop();
    expect(times.count).toBeGreaterThan(1);
    expect(times.longest).toBeGreaterThanOrEqual(12);
    expect(times.over).toBeGreaterThanOrEqual(1);
    expect(times.longestCpu).toBeGreaterThan(0);
    expect(times.longestKind).toBe('Timeout');
    expect(times.longestRunning).toBeGreaterThan(0);
  });
});
