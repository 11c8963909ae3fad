// Partition upkeep for the decision log (`audit.retention_days`): creates the coming months'
// partitions ahead, and drops the start of the chain once its every record is older than the
// retention both by its time and by when PostgreSQL stored it (never on a writer's clock
// alone), so no chain's anchor jumps over a surviving record. Every chain's records up to the
// dropped global seq go together (seq grows along each chain), and each chain's anchor moves to
// its newest record gone; the chain's checkpoints before the newest one below its anchor go
// with them (they vouch only for records that are gone). Runs at start and then periodically;
// with several gateways, one does the work and the others skip that round. Appends do not wait
// on it: they take the partition lock only to create a missing month.
import type { Knex } from 'knex';
import { anchorText, type CheckpointSigner } from '../chain/checkpoint-key';
import { addMonths, monthOf, PARTITION_LOCK, PgDecisionPartitions, type DroppedPartition } from './pg-decision-partitions';

export interface RetentionOptions {
  retentionDays: number;
  /** Months of partitions kept ready after the current one. Default 2. */
  monthsAhead?: number;
  /** Between runs. Default one hour. */
  intervalMs?: number;
  onError: (error: Error) => void;
  onRun?: (result: RetentionRun) => void;
  /** Signs each anchor move, so `decisions verify --public-key` can tell it from an edit. */
  signer?: CheckpointSigner | undefined;
}

export interface RetentionRun {
  /** False when another instance held the maintenance lock. */
  ran: boolean;
  created: string[];
  dropped: DroppedPartition[];
}

// Taken with try-lock: only one instance maintains partitions at a time.
export const MAINTENANCE_LOCK = 7_065_724_307_002;
const LOCK_TIMEOUT_MS = 5_000;

export class DecisionRetention {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;

  constructor(
    private readonly db: Knex,
    private readonly options: RetentionOptions,
  ) {}

  /** Runs once now (awaited) and then every interval, without keeping the process alive. */
  async start(): Promise<void> {
    await this.runSafely();
    this.timer = setInterval(() => void this.runSafely(), this.options.intervalMs ?? 3_600_000);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }

  async run(now = new Date()): Promise<RetentionRun> {
    return this.db.transaction(async (trx) => {
      const { rows } = await trx.raw<{ rows: { locked: boolean }[] }>('select pg_try_advisory_xact_lock(?) as locked', [MAINTENANCE_LOCK]);
      if (!rows[0]?.locked) return { ran: false, created: [], dropped: [] };
      // Dropping a partition waits for queries reading it; give up this round rather than stall appends.
      await trx.raw(`set local lock_timeout = ${LOCK_TIMEOUT_MS}`);
      await trx.raw('select pg_advisory_xact_lock(?)', [PARTITION_LOCK]);
      const partitions = new PgDecisionPartitions(trx);
      const existing = new Set((await partitions.months()).map((month) => month.getTime()));

      const created: string[] = [];
      const current = monthOf(now);
      for (let ahead = 0; ahead <= (this.options.monthsAhead ?? 2); ahead++) {
        const month = addMonths(current, ahead);
        if (existing.has(month.getTime())) continue;
        await partitions.ensure(month);
        created.push(month.toISOString().slice(0, 7));
      }

      const cutoff = now.getTime() - this.options.retentionDays * 86_400_000;
      const dropped = await this.dropExpired(
        partitions,
        [...existing].sort((a, b) => a - b).map((time) => new Date(time)),
        cutoff,
        now,
      );
      return { ran: true, created, dropped };
    });
  }

  /** Drops the expired empty months, and the expired whole start of the log, moving each chain's anchor past it. */
  private async dropExpired(partitions: PgDecisionPartitions, months: Date[], cutoff: number, now: Date): Promise<DroppedPartition[]> {
    const monthExpired = (month: Date) => addMonths(month, 1).getTime() <= cutoff;
    const dropped: DroppedPartition[] = [];
    const filled: { month: Date; min: number; max: number }[] = [];
    for (const month of months) {
      const range = await partitions.seqRange(month);
      if (range) filled.push({ month, ...range });
      else if (monthExpired(month)) dropped.push(await partitions.drop(month));
    }
    filled.sort((a, b) => a.min - b.min);
    for (let start = 0; start < filled.length;) {
      // This partition and those whose seq ranges overlap it, transitively, go together or not at all.
      let end = start + 1;
      let max = filled[start]!.max;
      while (end < filled.length && filled[end]!.min <= max) max = Math.max(max, filled[end++]!.max);
      const group = filled.slice(start, end);
      for (const { month } of group) {
        if (!monthExpired(month)) return dropped;
        const stored = await partitions.newestStored(month);
        if (stored && stored.getTime() > cutoff) return dropped;
      }
      // Read before the drop: each chain's newest record going.
      const newest = await partitions.newestPerChain(group.map(({ month }) => month));
      for (const { month } of group) dropped.push(await partitions.drop(month));
      await partitions.releaseIds(max);
      const { signer } = this.options;
      for (const [chain, record] of newest) {
        const claim = { chain, seq: record.seq, hash: record.hash, movedAt: now, retentionDays: this.options.retentionDays };
        await partitions.moveAnchor({ ...claim, keyId: signer?.keyId ?? null, signature: signer?.sign(anchorText(claim)) ?? null });
        await partitions.pruneCheckpoints(chain, record.seq);
      }
      start = end;
    }
    return dropped;
  }

  private async runSafely(): Promise<void> {
    const run = this.run().then(
      (result) => this.options.onRun?.(result),
      (error: unknown) =>
        this.options.onError(new Error('decision log partition upkeep failed; retrying at the next run', { cause: error })),
    );
    this.running = run;
    await run;
  }
}
