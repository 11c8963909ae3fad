// One benchmark target in its own process: started with `fork(target-process.js)`, it
// receives {start: kind, settings}, answers {ready: url}, answers {memory} on request,
// measures its event-loop delay, its CPU time, its allocations and a CPU profile between a
// start and a stop message, and exits cleanly on {stop}.
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { Session } from 'node:inspector';
import { constants as perfConstants, monitorEventLoopDelay, PerformanceObserver, type IntervalHistogram } from 'node:perf_hooks';
import { CallbackTimer } from './callback-times';
import { statTimes } from './proc-stat';
import { startTarget, type StartedTarget, type TargetKind, type TargetSettings } from './targets';

type Message =
  | { start: TargetKind; settings: TargetSettings }
  | { memory: true }
  | { loopDelay: 'start' | 'stop' }
  | { callbacks: 'start' | 'stop' }
  | { allocations: 'start' | 'stop' }
  | { survivors: 'start' | 'stop' }
  | { cpu: 'start' | 'stop' }
  | { profile: 'start' | 'stop'; file?: string }
  | { stop: true };

/** Event-loop delay while driven, in ms: `stalls` counts intervals longer than STALL_MS beyond the sampling interval. */
export interface LoopDelay {
  p50: number;
  p99: number;
  max: number;
  samples: number;
  stalls: number;
}

/** Bytes allocated on the JavaScript heap between start and stop (V8's sampling heap profiler, collected objects included), and by whom. */
export interface Allocations {
  bytes: number;
  /** By the function that allocated. */
  top: Array<{ frame: string; bytes: number }>;
  /** By Portcullis module on the stack (what it allocated and everything it called did), each byte counted once per module. */
  modules: Array<{ module: string; bytes: number }>;
}

/**
 * Where the target's CPU time went between start and stop, in µs: the whole process, its main
 * thread (the event loop), and the main thread's garbage-collection pauses (young-generation
 * scavenges and the rest), as V8 reports them to `perf_hooks`. The rest of the process's time
 * is its other threads: V8's helpers (parallel and concurrent GC), a policy worker thread, libuv.
 */
export interface CpuFigures {
  processUs: number;
  /** Undefined where /proc/self/task is not there (not Linux). */
  mainThreadUs: number | undefined;
  /** How long the main thread was ready to run but waited for a core (the kernel's run-queue wait); undefined without schedstat. */
  mainThreadWaitUs: number | undefined;
  scavenges: number;
  scavengeUs: number;
  otherGcUs: number;
  longestGcPauseMs: number;
}

/** The main thread's user + system time, in µs (its task's stat: the main thread's id is the process id). */
function mainThreadCpuUs(): number | undefined {
  try {
    return statTimes(readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8')).ownUs;
  } catch {
    return undefined;
  }
}

/** The main thread's time waiting on a run queue, in µs (its task's schedstat: time on a CPU, time waiting, timeslices, in ns). */
function mainThreadWaitUs(): number | undefined {
  try {
    const waitNs = Number(readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').split(' ')[1]);
    return Number.isFinite(waitNs) ? waitNs / 1000 : undefined;
  } catch {
    return undefined;
  }
}

/** How much a counter read at start and at stop grew; undefined when either read failed. */
function since(start: number | undefined, stop: number | undefined): number | undefined {
  return start === undefined || stop === undefined ? undefined : stop - start;
}

/** The histogram's timer fires every millisecond; what it records is the time between two firings. */
const LOOP_RESOLUTION_MS = 1;
export const STALL_MS = 5;
/** One sample per this many bytes allocated, on average: fine enough for a per-request figure. */
const SAMPLING_INTERVAL_BYTES = 1024;
/** One CPU sample per this many µs (what `node --cpu-prof` uses by default is 1000). */
const PROFILE_INTERVAL_US = 500;

let target: StartedTarget | undefined;
let delay: IntervalHistogram | undefined;
let inspector: Session | undefined;
let cpuAtStart: { process: NodeJS.CpuUsage; mainThreadUs: number | undefined; mainThreadWaitUs: number | undefined } | undefined;
let gcPauses: { observer: PerformanceObserver; scavenges: number[]; others: number[] } | undefined;
let callbackTimer: CallbackTimer | undefined;

// The benchmark went away (finished or failed): never linger as an orphan.
process.on('disconnect', () => process.exit(0));

process.on('message', (message: Message) => {
  if ('start' in message) {
    startTarget(message.start, message.settings).then(
      (started) => {
        target = started;
        process.send?.({ ready: started.url });
      },
      (error: unknown) => {
        process.send?.({ failed: String((error as Error).stack ?? error) });
        process.exit(1);
      },
    );
  } else if ('memory' in message) {
    const rssBeforeGc = process.memoryUsage.rss();
    // With --expose-gc, what is measured is what the process keeps, not garbage not yet collected.
    (globalThis as { gc?: () => void }).gc?.();
    const usage = process.memoryUsage();
    process.send?.({
      memory: { rssBeforeGc, rss: usage.rss, heapUsed: usage.heapUsed, external: usage.external, arrayBuffers: usage.arrayBuffers },
    });
  } else if ('loopDelay' in message) {
    if (message.loopDelay === 'start') {
      delay = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });
      delay.enable();
      process.send?.({ loopDelay: null });
    } else {
      delay!.disable();
      process.send?.({ loopDelay: loopDelayOf(delay!) });
    }
  } else if ('callbacks' in message) {
    if (message.callbacks === 'start') {
      const timer = (callbackTimer = new CallbackTimer(STALL_MS));
      void timer.ready.then(() => process.send?.({ callbacks: null }));
    } else {
      const timer = callbackTimer!;
      callbackTimer = undefined;
      // GC entries are delivered after the pause; give the last ones a turn to arrive.
      setImmediate(() => void timer.stop().then((times) => process.send?.({ callbacks: times })));
    }
  } else if ('cpu' in message) {
    // This process's CPU time (user + system) between start and stop: what a request costs it, whatever else the machine runs.
    if (message.cpu === 'start') {
      cpuAtStart = { process: process.cpuUsage(), mainThreadUs: mainThreadCpuUs(), mainThreadWaitUs: mainThreadWaitUs() };
      gcPauses?.observer.disconnect();
      const pauses = { scavenges: [] as number[], others: [] as number[] };
      const observer = new PerformanceObserver((list) => {
        for (const entry of list.getEntries()) {
          const kind = (entry as { detail?: { kind?: number } }).detail?.kind;
          (kind === perfConstants.NODE_PERFORMANCE_GC_MINOR ? pauses.scavenges : pauses.others).push(entry.duration);
        }
      });
      observer.observe({ entryTypes: ['gc'] });
      gcPauses = { observer, ...pauses };
      process.send?.({ cpu: null });
    } else {
      const used = process.cpuUsage(cpuAtStart!.process);
      const mainNow = mainThreadCpuUs();
      const waitNow = mainThreadWaitUs();
      const { observer, scavenges, others } = gcPauses!;
      // GC entries are delivered after the pause; give the last ones a turn to arrive.
      setImmediate(() => {
        observer.disconnect();
        gcPauses = undefined;
        const sumUs = (pauses: number[]) => pauses.reduce((sum, ms) => sum + ms * 1000, 0);
        const figures: CpuFigures = {
          processUs: used.user + used.system,
          mainThreadUs: since(cpuAtStart!.mainThreadUs, mainNow),
          mainThreadWaitUs: since(cpuAtStart!.mainThreadWaitUs, waitNow),
          scavenges: scavenges.length,
          scavengeUs: sumUs(scavenges),
          otherGcUs: sumUs(others),
          longestGcPauseMs: Math.max(0, ...scavenges, ...others),
        };
        process.send?.({ cpu: figures });
      });
    }
  } else if ('profile' in message) {
    // Only the measured window: start-up (module loading) and the warm-up (token verifications,
    // assertion signatures, JIT) are not what a request costs once the caches are warm.
    if (message.profile === 'start') {
      inspector = new Session();
      inspector.connect();
      void post('Profiler.enable')
        .then(() => post('Profiler.setSamplingInterval', { interval: PROFILE_INTERVAL_US }))
        .then(() => post('Profiler.start'))
        .then(() => process.send?.({ profile: null }));
    } else {
      void post('Profiler.stop')
        .then(async (result) => {
          inspector!.disconnect();
          await writeFile(message.file!, JSON.stringify((result as { profile: unknown }).profile));
        })
        .then(() => process.send?.({ profile: message.file }));
    }
  } else if ('allocations' in message || 'survivors' in message) {
    // survivors: what no scavenge collected: objects alive at a scavenge (copied within the young
    // generation or promoted: what the scavenger's pauses are made of), alive when sampling stops,
    // or allocated outside the young generation (large objects).
    const kind = 'allocations' in message ? 'allocations' : 'survivors';
    const action = 'allocations' in message ? message.allocations : message.survivors;
    if (action === 'start') {
      inspector = new Session();
      inspector.connect();
      void post('HeapProfiler.enable')
        .then(() =>
          post('HeapProfiler.startSampling', {
            samplingInterval: SAMPLING_INTERVAL_BYTES,
            includeObjectsCollectedByMinorGC: kind === 'allocations',
            includeObjectsCollectedByMajorGC: true,
          }),
        )
        .then(() => process.send?.({ [kind]: null }));
    } else {
      void post('HeapProfiler.stopSampling').then((result) => {
        inspector!.disconnect();
        process.send?.({ [kind]: allocationsOf((result as { profile: { head: HeapNode } }).profile.head) });
      });
    }
  } else if ('stop' in message) {
    const stopping = target ? target.close() : Promise.resolve();
    void stopping.finally(() => process.exit(0));
  }
});

function loopDelayOf(histogram: IntervalHistogram): LoopDelay {
  const ms = (ns: number) => ns / 1e6;
  // The share of samples above the stall threshold, from the histogram's percentile table.
  let over = 0;
  for (const [percentile, value] of histogram.percentiles) {
    if (ms(value) > LOOP_RESOLUTION_MS + STALL_MS) {
      over = 1 - percentile / 100;
      break;
    }
  }
  return {
    p50: ms(histogram.percentile(50)),
    p99: ms(histogram.percentile(99)),
    max: ms(histogram.max),
    samples: histogram.count,
    stalls: Math.round(over * histogram.count),
  };
}

interface HeapNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: HeapNode[];
}

function allocationsOf(head: HeapNode): Allocations {
  const byFrame = new Map<string, number>();
  const byModule = new Map<string, number>();
  const onStack = new Map<string, number>();
  let bytes = 0;
  const walk = (node: HeapNode) => {
    const { functionName, url, lineNumber } = node.callFrame;
    const module = url.includes('node_modules/') ? undefined : /\/(src\/[^:]+?)\.js$/.exec(url)?.[1];
    if (module) onStack.set(module, (onStack.get(module) ?? 0) + 1);
    bytes += node.selfSize;
    if (node.selfSize > 0) {
      const where = url ? `${url.replace(/^.*node_modules\//, '').replace(/^.*\.bench\//, '')}:${lineNumber + 1}` : '(native)';
      const frame = `${functionName || '(anonymous)'} ${where}`;
      byFrame.set(frame, (byFrame.get(frame) ?? 0) + node.selfSize);
      for (const key of onStack.keys()) byModule.set(key, (byModule.get(key) ?? 0) + node.selfSize);
    }
    for (const child of node.children) walk(child);
    if (module) {
      const depth = onStack.get(module)! - 1;
      if (depth === 0) onStack.delete(module);
      else onStack.set(module, depth);
    }
  };
  walk(head);
  const ranked = (map: Map<string, number>) => [...map].sort((x, y) => y[1] - x[1]).slice(0, 15);
  return {
    bytes,
    top: ranked(byFrame).map(([frame, size]) => ({ frame, bytes: size })),
    modules: ranked(byModule).map(([module, size]) => ({ module, bytes: size })),
  };
}

function post(method: string, params?: object): Promise<unknown> {
  return new Promise((resolve, reject) => inspector!.post(method, params, (error, result) => (error ? reject(error) : resolve(result))));
}
