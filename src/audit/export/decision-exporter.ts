// Ships durable decision records to an OPA-compatible collector, off the request path: a
// bounded buffer drained in batches every flush interval (or when a batch is full), retried
// with backoff. PostgreSQL stays the system of record: when the collector is away longer than
// the buffer lasts, the oldest events are dropped, counted and reported, never the requests.
import type { DecisionContent, PreparedDecision } from '../chain/decision-chain';
import type { EventSink } from './decision-export-sinks';
import { opaDecisionEvent, type OpaEventOptions } from './opa-decision-event';

export interface DecisionExporterOptions extends OpaEventOptions {
  batchSize: number;
  flushIntervalMs: number;
  /** Most events held while the sink is failing. */
  bufferSize: number;
  retryInitialMs?: number;
  retryMaxMs?: number;
  onError: (error: Error) => void;
}

export class DecisionExporter {
  private buffer: PreparedDecision[] = [];
  private timer: NodeJS.Timeout | undefined;
  private sending: Promise<void> | undefined;
  private failures = 0;
  private droppedCount = 0;
  private reportedDrop = false;
  private closed = false;

  constructor(
    private readonly sink: EventSink,
    private readonly options: DecisionExporterOptions,
  ) {}

  /** Events waiting to be sent. */
  get pending(): number {
    return this.buffer.length;
  }

  /** Events dropped because the buffer was full. */
  get dropped(): number {
    return this.droppedCount;
  }

  enqueue(records: readonly PreparedDecision[]): void {
    if (this.closed) return;
    this.buffer.push(...records);
    const excess = this.buffer.length - this.options.bufferSize;
    if (excess > 0) {
      this.buffer.splice(0, excess);
      this.droppedCount += excess;
      if (!this.reportedDrop) {
        this.reportedDrop = true;
        this.report(
          new Error(
            `the decision export buffer is full (${this.options.bufferSize} events): the oldest events are dropped until the collector accepts again (they stay in PostgreSQL)`,
          ),
        );
      }
    }
    if (this.buffer.length >= this.options.batchSize) this.send();
    else this.arm(this.options.flushIntervalMs);
  }

  /** Sends what is buffered, retrying until `deadlineMs` has passed; then stops. */
  async close(deadlineMs: number): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    const until = Date.now() + deadlineMs;
    while (this.buffer.length > 0 && Date.now() < until) {
      await this.sending;
      if (this.buffer.length === 0) break;
      await this.sendBatch();
      if (this.failures > 0) await new Promise((resolve) => setTimeout(resolve, Math.min(this.backoff(), Math.max(0, until - Date.now()))));
    }
    await this.sending;
    if (this.buffer.length > 0)
      this.report(new Error(`${this.buffer.length} decision events were not exported before shutdown (they are in PostgreSQL)`));
  }

  private arm(ms: number): void {
    if (this.timer || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.send();
    }, ms);
    this.timer.unref();
  }

  private send(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.sending || this.buffer.length === 0) return;
    this.sending = this.sendBatch().finally(() => {
      this.sending = undefined;
      if (this.closed || this.buffer.length === 0) return;
      if (this.failures > 0) this.arm(this.backoff());
      else if (this.buffer.length >= this.options.batchSize) this.send();
      else this.arm(this.options.flushIntervalMs);
    });
  }

  private async sendBatch(): Promise<void> {
    const batch = this.buffer.slice(0, this.options.batchSize);
    try {
      const events = batch.map((record) => opaDecisionEvent(JSON.parse(record.content) as DecisionContent, this.options));
      await this.sink.send(events);
    } catch (error) {
      this.failures += 1;
      this.report(new Error(`could not export ${batch.length} decision events (attempt ${this.failures}); retrying`, { cause: error }));
      return;
    }
    this.failures = 0;
    // Events dropped meanwhile were the oldest: drop what was sent by identity, not by count.
    const sent = new Set(batch);
    this.buffer = this.buffer.filter((record) => !sent.has(record));
    if (this.buffer.length < this.options.bufferSize) this.reportedDrop = false;
  }

  private backoff(): number {
    return Math.min(this.options.retryMaxMs ?? 10_000, (this.options.retryInitialMs ?? 200) * 2 ** Math.max(0, this.failures - 1));
  }

  private report(error: Error): void {
    try {
      this.options.onError(error);
    } catch {
      // The logger failing must not stop the export.
    }
  }
}
