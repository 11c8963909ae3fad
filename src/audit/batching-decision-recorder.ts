// Records decisions off the request path: record() only queues, and one writer drains the
// queue in order, in batches, when a batch is full or after a short delay. A failed write
// keeps its records and is retried with backoff; nothing is ever dropped, however long
// PostgreSQL is away; the growing backlog is reported instead.
import type { DecisionRecord, DecisionRecorder } from './decision-record';
import type { DecisionStore } from './pg-decision-store';

export interface BatchingDecisionRecorderOptions {
  /** Most records one write carries. Default 500. */
  batchSize?: number;
  /** How long a record may wait for its batch to fill up. Default 50 ms. */
  delayMs?: number;
  /** Backlog above which onError is told (once per excursion); records are still kept. Default 100,000. */
  maxBacklog?: number;
  /** First retry delay after a failed write; doubles up to retryMaxMs. Defaults 100 ms and 5 s. */
  retryInitialMs?: number;
  retryMaxMs?: number;
  /** Told about every failed write and about a backlog over maxBacklog. Should log loudly. */
  onError: (error: Error) => void;
}

interface FlushWaiter {
  /** Resolved once this many records (counted since start) are written. */
  target: number;
  resolve: () => void;
}

export class BatchingDecisionRecorder implements DecisionRecorder {
  private readonly batchSize: number;
  private readonly delayMs: number;
  private readonly maxBacklog: number;
  private readonly retryInitialMs: number;
  private readonly retryMaxMs: number;
  private readonly onError: (error: Error) => void;

  private readonly queue: DecisionRecord[] = [];
  private queued = 0;
  private written = 0;
  private waiters: FlushWaiter[] = [];
  private batchTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private writing: Promise<void> | undefined;
  private overBacklog = false;
  private closed = false;

  constructor(
    private readonly store: DecisionStore,
    options: BatchingDecisionRecorderOptions,
  ) {
    this.batchSize = options.batchSize ?? 500;
    this.delayMs = options.delayMs ?? 50;
    this.maxBacklog = options.maxBacklog ?? 100_000;
    this.retryInitialMs = options.retryInitialMs ?? 100;
    this.retryMaxMs = options.retryMaxMs ?? 5_000;
    this.onError = options.onError;
  }

  /** Records queued and not yet written (including a batch being written or retried). */
  get backlog(): number {
    return this.queue.length;
  }

  record(record: DecisionRecord): void {
    if (this.closed) throw new Error('the decision recorder is closed; the decision was not recorded');
    this.queue.push(record);
    this.queued += 1;
    if (this.queue.length > this.maxBacklog && !this.overBacklog) {
      this.overBacklog = true;
      this.report(new Error(`${this.queue.length} decision records are waiting to be written (more than ${this.maxBacklog}); they are kept in memory until PostgreSQL accepts them`));
    }
    this.schedule();
  }

  /**
   * Resolves when every record queued before the call is written. While it waits, a retry
   * timer keeps the process alive: an awaited flush must not end in a silent exit.
   */
  flush(): Promise<void> {
    const target = this.queued;
    if (this.written >= target) return Promise.resolve();
    const done = new Promise<void>((resolve) => this.waiters.push({ target, resolve }));
    this.retryTimer?.ref();
    this.startWriting();
    return done;
  }

  /** Refuses further records, writes everything queued, and stops the timers. */
  async close(): Promise<void> {
    this.closed = true;
    await this.flush();
    clearTimeout(this.batchTimer);
    this.batchTimer = undefined;
  }

  private schedule(): void {
    if (this.writing || this.queue.length === 0) return;
    if (this.queue.length >= this.batchSize || this.waiters.length > 0) {
      this.startWriting();
    } else if (!this.batchTimer) {
      this.batchTimer = setTimeout(() => this.startWriting(), this.delayMs);
      this.batchTimer.unref();
    }
  }

  private startWriting(): void {
    clearTimeout(this.batchTimer);
    this.batchTimer = undefined;
    if (this.writing) return;
    this.writing = this.drain().finally(() => {
      this.writing = undefined;
      // Records queued while the last batch was in flight.
      this.schedule();
    });
  }

  /** The single writer: batches go out one at a time, in queue order; a failed one is retried first. */
  private async drain(): Promise<void> {
    let failures = 0;
    while (this.queue.length > 0) {
      const batch = this.queue.slice(0, this.batchSize);
      try {
        await this.store.insertMany(batch);
      } catch (error) {
        failures += 1;
        this.report(new Error(`could not write ${batch.length} decision records (attempt ${failures}, ${this.queue.length} waiting); retrying`, { cause: error }));
        await this.pause(Math.min(this.retryMaxMs, this.retryInitialMs * 2 ** (failures - 1)));
        continue;
      }
      failures = 0;
      this.queue.splice(0, batch.length);
      this.written += batch.length;
      if (this.queue.length <= this.maxBacklog) this.overBacklog = false;
      this.releaseWaiters();
    }
  }

  private releaseWaiters(): void {
    const pending: FlushWaiter[] = [];
    for (const waiter of this.waiters) {
      if (waiter.target <= this.written) waiter.resolve();
      else pending.push(waiter);
    }
    this.waiters = pending;
  }

  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.retryTimer = setTimeout(() => {
        this.retryTimer = undefined;
        resolve();
      }, ms);
      if (this.waiters.length === 0) this.retryTimer.unref();
    });
  }

  private report(error: Error): void {
    try {
      this.onError(error);
    } catch {
      // A failing error callback must not stop the writer; the records are still kept.
    }
  }
}
