// Records decisions off the request path: record() only queues, and one writer drains the
// queue in order, in batches, when a batch is full or once its first record has waited a short
// delay; records that arrive while a batch is written wait for the next one to fill up too
// (written right behind it, they went a few at a time, each batch its own transaction). With a
// spool, a batch PostgreSQL refuses is appended to it (fsync'd) instead of waiting in memory,
// later batches follow it there to keep the order, and a replayer writes the spool back once
// PostgreSQL answers. Without one, a failed batch is retried from memory. Nothing is dropped:
// a record that arrives after close() (a request cut at shutdown) goes straight to the spool.
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { PreparedDecision } from '../chain/decision-chain';
import { prepareDecision } from '../chain/decision-chain';
import type { DecisionMask } from './decision-mask';
import type { DecisionRecord, DecisionRecorder } from '../decision-record';
import type { DecisionSpool } from './decision-spool';
import type { DecisionStore } from '../chain/pg-decision-store';

export interface BatchingDecisionRecorderOptions {
  /** Most records one write carries. Default 500. */
  batchSize?: number;
  /** How long a record may wait for its batch to fill up. Default 50 ms. */
  delayMs?: number;
  /** Memory backlog above which onError is told (once per excursion); records are still kept. Default 100,000. */
  maxBacklog?: number;
  /** First retry delay after a failed write; doubles up to retryMaxMs. Defaults 100 ms and 5 s. */
  retryInitialMs?: number;
  retryMaxMs?: number;
  /** Where batches go while PostgreSQL refuses them; without one they wait in memory. */
  spool?: DecisionSpool;
  /** audit.mask, applied before a record is hashed, stored, spooled or exported. */
  mask?: DecisionMask;
  /** Told, in order, about records once they are durable (stored or spooled): the export hooks in here. */
  onDurable?: (records: readonly PreparedDecision[]) => void;
  /** Told about every failed write and about a backlog over maxBacklog. Should log loudly. */
  onError: (error: Error) => void;
}

/**
 * Records prepared (masked, canonical JSON) between two turns of the event loop. A record takes
 * tens of µs, so a whole batch of 500 at once held requests back for 10-25 ms under load; a
 * slice this size stays well under a millisecond or two.
 */
const PREPARE_SLICE = 32;

interface Entry {
  record: DecisionRecord;
  /** When it was queued (performance.now()): its batch is due delayMs later. */
  queuedAt: number;
  prepared?: PreparedDecision;
  /** Set by recordDurably: settled once the record is durable, or rejected if it cannot be. */
  durable?: { resolve: () => void; reject: (error: Error) => void };
}

interface Waiter {
  /** Resolved once this many records (counted since start) have left memory… */
  target: number;
  /** …and, for flush(), once the spool is empty too. */
  inPostgres: boolean;
  resolve: () => void;
}

export class BatchingDecisionRecorder implements DecisionRecorder {
  private readonly batchSize: number;
  private readonly delayMs: number;
  private readonly maxBacklog: number;
  private readonly retryInitialMs: number;
  private readonly retryMaxMs: number;
  private readonly spool: DecisionSpool | undefined;
  private readonly mask: DecisionMask | undefined;
  private readonly onDurable: ((records: readonly PreparedDecision[]) => void) | undefined;
  private readonly onError: (error: Error) => void;

  private queue: Entry[] = [];
  private queued = 0;
  /** Records that left memory: stored, spooled, or (strict records only) withdrawn. */
  private settled = 0;
  private urgent = 0;
  private waiters: Waiter[] = [];
  private batchTimer: NodeJS.Timeout | undefined;
  private readonly pauses = new Set<{ timer: NodeJS.Timeout; wake: () => void }>();
  private writing: Promise<void> | undefined;
  private replaying: Promise<void> | undefined;
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
    this.spool = options.spool;
    this.mask = options.mask;
    this.onDurable = options.onDurable;
    this.onError = options.onError;
    // Records an earlier process left in the spool are written before anything new.
    this.startReplay();
  }

  /** Records not yet in PostgreSQL: in memory plus in the spool. */
  get backlog(): number {
    return this.queue.length + (this.spool?.pending ?? 0);
  }

  get memoryBacklog(): number {
    return this.queue.length;
  }

  get spoolBacklog(): number {
    return this.spool?.pending ?? 0;
  }

  /** Never throws, closed or not. */
  record(record: DecisionRecord): void {
    if (this.closed) {
      this.late(record).catch((error: Error) => this.report(error));
      return;
    }
    this.enqueue({ record, queuedAt: performance.now() });
  }

  /** Resolves once the record is stored in PostgreSQL or fsync'd to the spool; rejects if neither is possible. */
  recordDurably(record: DecisionRecord): Promise<void> {
    if (this.closed) return this.late(record);
    return new Promise((resolve, reject) => {
      this.urgent += 1;
      this.enqueue({ record, queuedAt: performance.now(), durable: { resolve, reject } });
    });
  }

  /**
   * Resolves when every record queued before the call is in PostgreSQL (spooled ones replayed).
   * While it waits, retry timers keep the process alive: an awaited flush must not end in a silent exit.
   */
  flush(): Promise<void> {
    return this.wait(true);
  }

  /**
   * Sends further records to the spool and makes everything queued durable: written, or
   * spooled when PostgreSQL is away. A spool being replayed gets until its first failure to
   * finish; what remains is written by the next start.
   */
  async close(): Promise<void> {
    this.closed = true;
    await this.wait(!this.spool);
    clearTimeout(this.batchTimer);
    this.batchTimer = undefined;
    this.wakePauses();
    await this.replaying;
    this.wakePauses();
    await this.writing;
  }

  /**
   * A shutdown out of time: closes, copies every record still in memory to the spool and stops
   * the writer, without waiting for the write in flight (which may yet store some of them: a
   * record both stored and spooled is skipped on replay). Without a spool the records are given
   * up (reported), so that no retry outlives the shutdown. Returns how many were spooled and
   * how many lost (all of them when there is no spool or its append failed).
   */
  async spoolUnwritten(): Promise<{ spooled: number; lost: number }> {
    this.closed = true;
    const entries = this.queue;
    this.queue = [];
    // They leave memory either way (a later close() waits for nothing); the write in flight may
    // still count some of them again, which only lets a wait end sooner.
    this.settled += entries.length;
    this.urgent -= entries.filter((entry) => entry.durable).length;
    clearTimeout(this.batchTimer);
    this.batchTimer = undefined;
    this.wakePauses();
    let lost = 0;
    try {
      if (!this.spool) throw new Error('there is no spool (audit.spool: none)');
      if (entries.length > 0) await this.spool.append(entries.map((entry) => (entry.prepared ??= this.prepare(entry.record))));
      for (const entry of entries) entry.durable?.resolve();
    } catch (error) {
      lost = entries.length;
      if (lost > 0) this.report(new Error(`${lost} decision records were neither written nor spooled before shutdown`, { cause: error }));
      for (const entry of entries) entry.durable?.reject(new Error('the decision record could not be made durable', { cause: error }));
    }
    for (const waiter of this.waiters.splice(0)) waiter.resolve();
    return { spooled: entries.length - lost, lost };
  }

  /** A record after close(): appended to the spool for the next start to write; rejects without one. */
  private async late(record: DecisionRecord): Promise<void> {
    if (!this.spool) throw new Error(`decision ${record.id} arrived after the decision recorder closed and there is no spool to keep it`);
    try {
      await this.spool.append([this.prepare(record)]);
    } catch (error) {
      throw new Error(`decision ${record.id} arrived after the decision recorder closed and could not be spooled`, { cause: error });
    }
  }

  private enqueue(entry: Entry): void {
    this.queue.push(entry);
    this.queued += 1;
    if (this.queue.length > this.maxBacklog && !this.overBacklog) {
      this.overBacklog = true;
      const where = this.spool ? 'PostgreSQL or the spool accepts them' : 'PostgreSQL accepts them';
      this.report(
        new Error(
          `${this.queue.length} decision records are waiting to be written (more than ${this.maxBacklog}); they are kept in memory until ${where}`,
        ),
      );
    }
    this.schedule();
  }

  private wait(inPostgres: boolean): Promise<void> {
    const target = this.queued;
    if (this.reached(target, inPostgres)) return Promise.resolve();
    const done = new Promise<void>((resolve) => this.waiters.push({ target, inPostgres, resolve }));
    for (const pause of this.pauses) pause.timer.ref();
    this.startWriting();
    return done;
  }

  private reached(target: number, inPostgres: boolean): boolean {
    return this.settled >= target && (!inPostgres || !this.spool || this.spool.pending === 0);
  }

  private schedule(): void {
    if (this.writing || this.queue.length === 0) return;
    if (this.due()) {
      this.startWriting();
    } else if (!this.batchTimer) {
      // Measured from the oldest record waiting: one that came while the last batch was written has waited already.
      const wait = this.delayMs - (performance.now() - this.queue[0]!.queuedAt);
      this.batchTimer = setTimeout(() => this.startWriting(), Math.max(0, wait));
      this.batchTimer.unref();
    }
  }

  /** Whether the queue is to be written now rather than when its oldest record has waited delayMs: a full batch, or someone waiting. */
  private due(): boolean {
    return this.queue.length >= this.batchSize || this.waiters.length > 0 || this.urgent > 0;
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

  /** The single writer: batches leave memory one at a time, in queue order; a failed one is retried first. */
  private async drain(): Promise<void> {
    let failures = 0;
    while (this.queue.length > 0) {
      const entries = this.queue.slice(0, this.batchSize);
      const batch = await this.prepareInSlices(entries);
      const failure = await this.persist(batch);
      if (failure) {
        failures += 1;
        this.report(
          new Error(`could not write ${batch.length} decision records (attempt ${failures}, ${this.queue.length} waiting); retrying`, {
            cause: failure,
          }),
        );
        this.withdraw(entries, failure);
        await this.pause(this.backoff(failures));
        continue;
      }
      failures = 0;
      this.leaveMemory(entries);
      this.tell(batch);
      for (const entry of entries) entry.durable?.resolve();
      this.releaseWaiters();
      // What came meanwhile waits for its batch to fill (schedule(), once this writer is done).
      if (!this.due()) return;
    }
  }

  /** Prepares the batch a slice at a time, letting requests run in between. */
  private async prepareInSlices(entries: readonly Entry[]): Promise<PreparedDecision[]> {
    const batch: PreparedDecision[] = [];
    for (let start = 0; start < entries.length; start += PREPARE_SLICE) {
      if (start > 0) await nextTurn();
      for (const entry of entries.slice(start, start + PREPARE_SLICE)) batch.push((entry.prepared ??= this.prepare(entry.record)));
    }
    return batch;
  }

  /** Masked and canonical. An input that cannot be serialized (a bug) must not block the queue: the decision is kept without it. */
  private prepare(record: DecisionRecord): PreparedDecision {
    const masked = this.mask ? this.mask.apply(record) : record;
    try {
      return prepareDecision(masked);
    } catch (error) {
      this.report(new Error(`decision ${record.id}: its input could not be serialized and is recorded without it`, { cause: error }));
      return prepareDecision({ ...masked, input: { unrecordable: String((error as Error).message) } });
    }
  }

  /** Stores the batch, or spools it; returns why neither worked. */
  private async persist(batch: readonly PreparedDecision[]): Promise<Error | undefined> {
    const spool = this.spool;
    if (!spool || spool.pending === 0) {
      try {
        await this.store.append(batch);
        return undefined;
      } catch (error) {
        if (!spool) return error as Error;
        this.report(
          new Error(`could not write ${batch.length} decision records to PostgreSQL; spooling them to ${spool.file} until it is back`, {
            cause: error,
          }),
        );
      }
    }
    // Older records wait in the spool: these go behind them, so the order holds.
    try {
      await spool.append(batch);
    } catch (error) {
      return error as Error;
    }
    this.startReplay();
    return undefined;
  }

  /** Strict records that could not be made durable are taken back: their requests are refused instead. */
  private withdraw(entries: readonly Entry[], cause: Error): void {
    const strict = new Set(entries.filter((entry) => entry.durable));
    if (strict.size === 0) return;
    this.queue = this.queue.filter((entry) => !strict.has(entry));
    this.settled += strict.size;
    this.urgent -= strict.size;
    for (const entry of strict) entry.durable!.reject(new Error('the decision record could not be made durable', { cause }));
    this.releaseWaiters();
  }

  private leaveMemory(entries: readonly Entry[]): void {
    this.queue.splice(0, entries.length);
    this.settled += entries.length;
    this.urgent -= entries.filter((entry) => entry.durable).length;
    if (this.queue.length <= this.maxBacklog) this.overBacklog = false;
  }

  private startReplay(): void {
    if (!this.spool || this.replaying || this.spool.pending === 0) return;
    this.replaying = this.replay().finally(() => {
      this.replaying = undefined;
      this.releaseWaiters();
    });
  }

  /** Writes the spool back to PostgreSQL in order; ids already stored are skipped by the store. */
  private async replay(): Promise<void> {
    const spool = this.spool!;
    const batchSize = Math.max(this.batchSize, 2000);
    let failures = 0;
    while (spool.pending > 0) {
      try {
        const { records, bytes, corrupt } = await spool.peek(batchSize);
        if (corrupt > 0) this.report(new Error(`${corrupt} unreadable lines in the spool ${spool.file} were skipped`));
        await this.store.append(records);
        await spool.consume(records.length + corrupt, bytes);
        failures = 0;
        this.releaseWaiters();
      } catch (error) {
        failures += 1;
        this.report(
          new Error(`could not replay the spool (${spool.pending} decision records waiting, attempt ${failures}); retrying`, {
            cause: error,
          }),
        );
        // Shutting down: the spool is durable, the next start replays the rest.
        if (this.closed) return;
        await this.pause(this.backoff(failures));
      }
    }
  }

  private tell(batch: readonly PreparedDecision[]): void {
    if (!this.onDurable) return;
    try {
      this.onDurable(batch);
    } catch (error) {
      this.report(new Error('the decision export hook failed', { cause: error }));
    }
  }

  private releaseWaiters(): void {
    const pending: Waiter[] = [];
    for (const waiter of this.waiters) {
      if (this.reached(waiter.target, waiter.inPostgres)) waiter.resolve();
      else pending.push(waiter);
    }
    this.waiters = pending;
  }

  private backoff(failures: number): number {
    return Math.min(this.retryMaxMs, this.retryInitialMs * 2 ** (failures - 1));
  }

  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const pause = {
        wake: () => {
          clearTimeout(pause.timer);
          this.pauses.delete(pause);
          resolve();
        },
        timer: setTimeout(() => pause.wake(), ms),
      };
      this.pauses.add(pause);
      if (this.waiters.length === 0) pause.timer.unref();
    });
  }

  private wakePauses(): void {
    for (const pause of [...this.pauses]) pause.wake();
  }

  private report(error: Error): void {
    try {
      this.onError(error);
    } catch {
      // A failing error callback must not stop the writer; the records are still kept.
    }
  }
}
