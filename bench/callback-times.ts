// Times the event loop's callbacks in a benchmark target, to tell JavaScript that runs long by
// itself from a callback that a garbage-collection pause, or the operating system giving the
// core to another process, held up.
import { createHook, executionAsyncResource, type AsyncHook } from 'node:async_hooks';
import { existsSync } from 'node:fs';
import { PerformanceObserver } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';

/** [start, end] in ms on performance.now()'s clock. */
type Span = [start: number, end: number];

/**
 * The event loop's callbacks between start and stop, timed one by one (async_hooks: an I/O
 * callback, a timer, an immediate, a nextTick or a promise reaction, the outermost only), in ms.
 * A callback's time on the clock also holds the garbage-collection pauses that began inside it
 * and any time the thread waited for a core (on a machine with more busy threads than cores).
 * So each long callback is also given the process's CPU time meanwhile, and the main thread's
 * (on Linux): the JavaScript in it ran no longer than its time without the pauses, nor longer
 * than either CPU time. The process's counts every thread (the policy thread, V8's helpers); the
 * main thread's is read from /proc by a helper thread every ~0.5 ms, and a callback is given
 * what the main thread ran between the last reading before it and the first after it: an upper
 * bound, looser by the readings' spacing. (Node.js 22.15 and 23.9 have process.threadCpuUsage(),
 * which would give each callback its own; the project's Node.js 20 does not.)
 */
export interface CallbackTimes {
  count: number;
  /** The longest on the clock, with the GC pauses inside it and the process's CPU time meanwhile. */
  longest: number;
  longestGc: number;
  longestCpu: number;
  /** At most how long the main thread ran during the longest (see above); undefined where it could not be read. */
  longestMainCpu: number | undefined;
  /** What ran in it: the constructor's name of its async resource (`Timeout`, `Immediate`, a socket's, a promise's, …). */
  longestKind: string;
  /** Callbacks over the threshold on the clock. */
  over: number;
  /** At most how long JavaScript ran in the longest-running callback, and in how many that bound is over the threshold. */
  longestRunning: number;
  /** The kind of the callback that bound belongs to. */
  longestRunningKind: string;
  /**
   * How far apart the two readings of the main thread's CPU around that callback were, when
   * they bound it (ms): the wider than the callback, the more of its neighbours' time the bound holds.
   */
  longestRunningReadingsApart: number | undefined;
  overRunning: number;
}

/** A callback kept for the summary: on the clock, the process's CPU time meanwhile and at most the main thread's. */
interface Callback {
  start: number;
  end: number;
  cpu: number;
  mainCpu?: MainCpu;
  kind: string;
}

/** At most how long the main thread ran during a callback, and how far apart the readings that say so were (ms). */
export interface MainCpu {
  cpu: number;
  apart: number;
}

/** Times every outermost callback from its construction until stop(); see CallbackTimes. */
export class CallbackTimer {
  /** Callbacks longer than this are kept to find the GC pauses inside them; the rest are only counted. */
  private static readonly KEEP_MS = 1;

  private readonly hook: AsyncHook;
  private readonly observer: PerformanceObserver;
  private readonly kept: Callback[] = [];
  private readonly pauses: Span[] = [];
  private count = 0;
  private longest = 0;
  private depth = 0;
  private started = 0;
  private cpuAtStart = 0;
  private resource: object | undefined;
  private readonly sampler = MainThreadCpuSampler.start();

  /** `stallMs`: what counts as a long callback. */
  constructor(private readonly stallMs: number) {
    this.hook = createHook({
      before: () => {
        if (this.depth++ !== 0) return;
        this.cpuAtStart = cpuMs();
        this.resource = executionAsyncResource();
        this.started = performance.now();
      },
      after: () => {
        // The callback that enabled the hook ends without a `before` seen: not one to time.
        if (this.depth === 0) return;
        if (--this.depth !== 0) return;
        const end = performance.now();
        const took = end - this.started;
        this.count += 1;
        if (took > this.longest) this.longest = took;
        if (took > CallbackTimer.KEEP_MS)
          this.kept.push({ start: this.started, end, cpu: cpuMs() - this.cpuAtStart, kind: this.resource?.constructor?.name ?? 'unknown' });
      },
    }).enable();
    this.observer = new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) this.pauses.push([entry.startTime, entry.startTime + entry.duration]);
    });
    this.observer.observe({ entryTypes: ['gc'] });
  }

  /** Resolves once the main thread's CPU time is being read (at once where it cannot be). */
  get ready(): Promise<void> {
    return this.sampler?.ready ?? Promise.resolve();
  }

  async stop(): Promise<CallbackTimes> {
    this.hook.disable();
    this.observer.disconnect();
    const readings = await this.sampler?.stop();
    // performance.now() (the callbacks' and the GC pauses' clock) to the readings' clock.
    const offset = Number(process.hrtime.bigint()) / 1e6 - performance.now();
    const kept = readings
      ? this.kept.map((callback) => ({ ...callback, mainCpu: mainCpuWithin(readings, offset + callback.start, offset + callback.end) }))
      : this.kept;
    return summarizeCallbacks({ count: this.count, longest: this.longest, kept, pauses: this.pauses }, this.stallMs);
  }
}

/** Readings of the main thread's CPU time, three numbers each: the clock before the read and after it (process.hrtime, ms), and the CPU time read (ms). */
export type CpuReadings = Float64Array;

/** Readings kept: an hour at the helper's pace would be 7.2 million; a run times seconds. */
const MAX_READINGS = 200_000;

const READING_INTERVAL_MS = 0.5;

// The helper thread: reads the main thread's schedstat (its first field is the time it has run,
// in ns) until told to stop, each reading stamped before and after it on the monotonic clock
// every thread shares (process.hrtime, in ms).
const SAMPLER_SOURCE = `
const { workerData, parentPort } = require('node:worker_threads');
const { openSync, readSync, closeSync } = require('node:fs');
const { file, readings, control, intervalMs } = workerData;
const out = new Float64Array(readings);
const state = new Int32Array(control);
const fd = openSync(file, 'r');
const buffer = Buffer.alloc(128);
const capacity = out.length / 3;
const now = () => Number(process.hrtime.bigint()) / 1e6;
const read = () => {
  const before = now();
  const length = readSync(fd, buffer, 0, buffer.length, 0);
  const after = now();
  const i = Atomics.load(state, 1);
  if (i >= capacity) return;
  out[3 * i] = before;
  out[3 * i + 1] = after;
  out[3 * i + 2] = Number(buffer.toString('latin1', 0, length).split(' ')[0]) / 1e6;
  Atomics.store(state, 1, i + 1);
};
// A reading before the first callback timed, and one after the last (the loop reads once more when told to stop).
read();
parentPort.postMessage('reading');
while (Atomics.load(state, 0) === 0) {
  Atomics.wait(state, 0, 0, intervalMs);
  read();
}
closeSync(fd);
`;

/** The helper thread that reads the main thread's CPU time; none where /proc does not have it. */
class MainThreadCpuSampler {
  private constructor(
    private readonly readings: SharedArrayBuffer,
    private readonly control: Int32Array,
    /** Resolves once the first reading is taken, or the helper failed (then there are none: the process's CPU time bounds the callbacks alone). */
    readonly ready: Promise<void>,
    private readonly exited: Promise<void>,
  ) {}

  static start(): MainThreadCpuSampler | undefined {
    // The main thread's id is the process's.
    const file = `/proc/${process.pid}/task/${process.pid}/schedstat`;
    if (!existsSync(file)) return undefined;
    const readings = new SharedArrayBuffer(MAX_READINGS * 3 * Float64Array.BYTES_PER_ELEMENT);
    const control = new SharedArrayBuffer(2 * Int32Array.BYTES_PER_ELEMENT);
    const worker = new Worker(SAMPLER_SOURCE, { eval: true, workerData: { file, readings, control, intervalMs: READING_INTERVAL_MS } });
    worker.unref();
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    const ready = Promise.race([new Promise<void>((resolve) => worker.once('message', () => resolve())), exited]);
    // A helper that fails exits too ('error' first): its readings stop where it did.
    worker.on('error', () => undefined);
    return new MainThreadCpuSampler(readings, new Int32Array(control), ready, exited);
  }

  /** Stops the helper and returns its readings, oldest first. */
  async stop(): Promise<CpuReadings> {
    Atomics.store(this.control, 0, 1);
    Atomics.notify(this.control, 0);
    await this.exited;
    return new Float64Array(this.readings, 0, Atomics.load(this.control, 1) * 3);
  }
}

/**
 * At most how long the main thread ran between `start` and `end` (process.hrtime, ms): the CPU
 * time of the first reading begun at or after `end` minus that of the last one ended at or
 * before `start`. Undefined when no reading brackets the span.
 */
export function mainCpuWithin(readings: CpuReadings, start: number, end: number): MainCpu | undefined {
  const count = readings.length / 3;
  // The readings are in order on both stamps: binary searches, as a run keeps thousands of long callbacks.
  const firstWhere = (test: (i: number) => boolean) => {
    let low = 0;
    let high = count;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (test(middle)) high = middle;
      else low = middle + 1;
    }
    return low;
  };
  const below = firstWhere((i) => readings[3 * i + 1]! > start) - 1;
  const above = firstWhere((i) => readings[3 * i]! >= end);
  if (below < 0 || above >= count) return undefined;
  return { cpu: readings[3 * above + 2]! - readings[3 * below + 2]!, apart: readings[3 * above]! - readings[3 * below + 1]! };
}

/** The process's CPU time (user + system, every thread), ms. */
function cpuMs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}

/**
 * CallbackTimes from what a timer saw: every callback counted, the longest, the callbacks long
 * enough to matter, and the GC pauses as [start, end], on one clock (ms).
 */
export function summarizeCallbacks(
  seen: { count: number; longest: number; kept: readonly Callback[]; pauses: readonly Span[] },
  stallMs: number,
): CallbackTimes {
  const gcInside = ({ start, end }: Callback) =>
    seen.pauses.reduce((sum, [from, to]) => sum + Math.max(0, Math.min(end, to) - Math.max(start, from)), 0);
  let longestGc = 0;
  let longestCpu = 0;
  let longestMainCpu: number | undefined;
  let longestKind = '';
  let over = 0;
  let overRunning = 0;
  // Only kept callbacks are long enough to matter; with none kept, the longest bounds them all.
  let longestRunning = seen.kept.length > 0 ? 0 : seen.longest;
  let longestRunningKind = '';
  let longestRunningReadingsApart: number | undefined;
  for (const callback of seen.kept) {
    const took = callback.end - callback.start;
    const gc = gcInside(callback);
    if (took === seen.longest) {
      longestGc = gc;
      longestCpu = callback.cpu;
      longestMainCpu = callback.mainCpu?.cpu;
      longestKind = callback.kind;
    }
    if (took > stallMs) over += 1;
    const running = Math.min(took - gc, callback.cpu, callback.mainCpu?.cpu ?? Infinity);
    if (running > stallMs) overRunning += 1;
    if (running > longestRunning) {
      longestRunning = running;
      longestRunningKind = callback.kind;
      longestRunningReadingsApart = running === callback.mainCpu?.cpu ? callback.mainCpu.apart : undefined;
    }
  }
  return {
    count: seen.count,
    longest: seen.longest,
    longestGc,
    longestCpu,
    longestMainCpu,
    longestKind,
    over,
    longestRunning,
    longestRunningKind,
    longestRunningReadingsApart,
    overRunning,
  };
}
