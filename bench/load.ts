// Drives one target with autocannon at a fixed concurrency and measures every response
// itself (autocannon's own histogram has whole-millisecond resolution): requests per
// second of 2xx answers, p50 and p99 in milliseconds, and anything that was not a 2xx.
import autocannon from 'autocannon';
import type { CpuFigures } from './target-process';

export interface LoadRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
}

export interface LoadResult {
  ok: number;
  failed: number;
  rps: number;
  p50: number;
  p99: number;
  /** Set by the caller that measured it: the target process's CPU time per request… */
  cpuUsPerRequest?: number;
  /** …and where it went (main thread, GC pauses), for the whole run. */
  cpu?: CpuFigures;
  /** Likewise: PostgreSQL's CPU time per request (all its processes), the target's writes included. */
  postgresCpuUsPerRequest?: number;
}

export interface LoadOptions {
  connections: number;
  /** Run this long… */
  durationS?: number;
  /** …or until this many requests were sent. */
  amount?: number;
  /** Requests per second across all connections (paced instead of as fast as answered). */
  rate?: number;
}

export async function drive(url: string, requests: readonly LoadRequest[], options: LoadOptions): Promise<LoadResult> {
  const latencies: number[] = [];
  let ok = 0;
  let failed = 0;
  const started = process.hrtime.bigint();
  let finished!: (result: autocannon.Result) => void;
  let failedToRun!: (error: unknown) => void;
  const done = new Promise<autocannon.Result>((resolve, reject) => {
    finished = resolve;
    failedToRun = reject;
  });
  const instance = autocannon(
    {
      url,
      connections: options.connections,
      pipelining: 1,
      ...(options.amount ? { amount: options.amount } : { duration: options.durationS ?? 10 }),
      ...(options.rate ? { overallRate: options.rate } : {}),
      requests: requests.map((request) => ({ method: request.method as 'GET', path: request.path, headers: request.headers })),
    },
    (error, result) => (error ? failedToRun(error) : finished(result)),
  );
  instance.on('response', (_client: unknown, statusCode: number, _bytes: number, responseTime: number) => {
    if (statusCode >= 200 && statusCode < 300) {
      ok += 1;
      latencies.push(responseTime);
    } else {
      failed += 1;
    }
  });
  const result = await done;
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  failed += result.errors + result.timeouts;
  latencies.sort((a, b) => a - b);
  return { ok, failed, rps: ok / seconds, p50: percentile(latencies, 0.5), p99: percentile(latencies, 0.99) };
}

export function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

export function median(values: readonly number[]): number {
  return percentile(
    [...values].sort((a, b) => a - b),
    0.5,
  );
}
