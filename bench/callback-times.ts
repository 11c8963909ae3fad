// Times the event loop's callbacks in a benchmark target, to tell JavaScript that runs long by
// itself from a callback that a garbage-collection pause, or the operating system giving the
// core to another process, held up.
import { createHook, executionAsyncResource, type AsyncHook } from 'node:async_hooks';
import { PerformanceObserver } from 'node:perf_hooks';

/** [start, end] in ms on performance.now()'s clock. */
type Span = [start: number, end: number];

/**
 * The event loop's callbacks between start and stop, timed one by one (async_hooks: an I/O
 * callback, a timer, an immediate, a nextTick or a promise reaction, the outermost only), in ms.
 * A callback's time on the clock also holds the garbage-collection pauses that began inside it
 * and any time the thread waited for a core (on a machine with more busy threads than cores).
 * So each long callback is also given the process's CPU time meanwhile: the JavaScript in it ran
 * no longer than its time without the pauses, nor longer than that CPU time (the process's, all
 * threads: an upper bound for the main thread's).
 */
export interface CallbackTimes {
  count: number;
  /** The longest on the clock, with the GC pauses inside it and the process's CPU time meanwhile. */
  longest: number;
  longestGc: number;
  longestCpu: number;
  /** What ran in it: the constructor's name of its async resource (`Timeout`, `Immediate`, a socket's, a promise's, …). */
  longestKind: string;
  /** Callbacks over the threshold on the clock. */
  over: number;
  /** At most how long JavaScript ran in the longest-running callback, and in how many that bound is over the threshold. */
  longestRunning: number;
  /** The kind of the callback that bound belongs to. */
  longestRunningKind: string;
  overRunning: number;
}

/** A callback kept for the summary: on the clock, and the process's CPU time meanwhile. */
interface Callback {
  start: number;
  end: number;
  cpu: number;
  kind: string;
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

  stop(): CallbackTimes {
    this.hook.disable();
    this.observer.disconnect();
    return summarizeCallbacks({ count: this.count, longest: this.longest, kept: this.kept, pauses: this.pauses }, this.stallMs);
  }
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
  let longestKind = '';
  let over = 0;
  let overRunning = 0;
  // Only kept callbacks are long enough to matter; with none kept, the longest bounds them all.
  let longestRunning = seen.kept.length > 0 ? 0 : seen.longest;
  let longestRunningKind = '';
  for (const callback of seen.kept) {
    const took = callback.end - callback.start;
    const gc = gcInside(callback);
    if (took === seen.longest) {
      longestGc = gc;
      longestCpu = callback.cpu;
      longestKind = callback.kind;
    }
    if (took > stallMs) over += 1;
    const running = Math.min(took - gc, callback.cpu);
    if (running > stallMs) overRunning += 1;
    if (running > longestRunning) {
      longestRunning = running;
      longestRunningKind = callback.kind;
    }
  }
  return {
    count: seen.count,
    longest: seen.longest,
    longestGc,
    longestCpu,
    longestKind,
    over,
    longestRunning,
    longestRunningKind,
    overRunning,
  };
}
