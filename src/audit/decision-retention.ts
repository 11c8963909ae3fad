// Partition upkeep for the decision log (`audit.retention_days`): creates the coming months'
// partitions ahead and drops the partitions whose every record is older than the retention.
// Whole partitions are dropped, so a record is kept at least retention_days and at most about
// a month longer (until its month has aged out). Runs at start and then periodically; with
// several gateways, one does the work and the others skip that round.
import type { Knex } from 'knex';
import { addMonths, DECISION_LOG_LOCK, monthOf, PgDecisionPartitions, type DroppedPartition } from './pg-decision-partitions';

export interface RetentionOptions {
  retentionDays: number;
  /** Months of partitions kept ready after the current one. Default 2. */
  monthsAhead?: number;
  /** Between runs. Default one hour. */
  intervalMs?: number;
  onError: (error: Error) => void;
  onRun?: (result: RetentionRun) => void;
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
      await trx.raw('select pg_advisory_xact_lock(?)', [DECISION_LOG_LOCK]);
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
      const dropped: DroppedPartition[] = [];
      for (const time of [...existing].sort((a, b) => a - b)) {
        const month = new Date(time);
        if (addMonths(month, 1).getTime() > cutoff) break;
        dropped.push(await partitions.drop(month));
      }
      return { ran: true, created, dropped };
    });
  }

  private async runSafely(): Promise<void> {
    const run = this.run().then(
      (result) => this.options.onRun?.(result),
      (error: unknown) => this.options.onError(new Error('decision log partition upkeep failed; retrying at the next run', { cause: error })),
    );
    this.running = run;
    await run;
  }
}
