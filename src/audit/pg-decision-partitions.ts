// The monthly partitions of `decisions` (`decisions_y2026m11` holds November 2026, UTC):
// created ahead of time and on demand, and dropped whole when retention says so. The anchor
// records the newest chained record removed, so verification can start after it.
import type { Knex } from 'knex';

/** Held (transaction-scoped) by every chain append and by partition maintenance. */
export const DECISION_LOG_LOCK = 7_065_724_307_001;

const PARTITION = /^decisions_y(\d{4})m(\d{2})$/;

/** The first instant of the UTC month containing `time`. */
export function monthOf(time: Date | string): Date {
  const date = typeof time === 'string' ? new Date(time) : time;
  return new Date(Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), 1));
}

export function addMonths(month: Date, months: number): Date {
  return new Date(Date.UTC(month.getUTCFullYear(), month.getUTCMonth() + months, 1));
}

export function partitionName(month: Date): string {
  return `decisions_y${month.getUTCFullYear()}m${String(month.getUTCMonth() + 1).padStart(2, '0')}`;
}

export interface DroppedPartition {
  name: string;
  /** Records removed with it. */
  records: number;
}

export class PgDecisionPartitions {
  constructor(private readonly db: Knex | Knex.Transaction) {}

  /** Creates the month's partition unless it exists. Run under DECISION_LOG_LOCK: concurrent creates collide. */
  async ensure(month: Date): Promise<void> {
    const from = monthOf(month);
    await this.db.raw(
      `create table if not exists ${partitionName(from)} partition of decisions for values from ('${from.toISOString()}') to ('${addMonths(from, 1).toISOString()}')`,
    );
  }

  /** The months that have a partition, oldest first. */
  async months(): Promise<Date[]> {
    const { rows } = await this.db.raw<{ rows: { name: string }[] }>(
      `select c.relname as name from pg_inherits i join pg_class c on c.oid = i.inhrelid where i.inhparent = 'decisions'::regclass`,
    );
    return rows
      .map((row) => PARTITION.exec(row.name))
      .filter((match): match is RegExpExecArray => match !== null)
      .map((match) => new Date(Date.UTC(Number(match[1]), Number(match[2]) - 1, 1)))
      .sort((a, b) => a.getTime() - b.getTime());
  }

  /** The lowest and highest seq in the month's partition (null when it is empty); index-only. */
  async seqRange(month: Date): Promise<{ min: number; max: number } | null> {
    const { rows } = await this.db.raw<{ rows: { min: string | null; max: string | null }[] }>(
      `select min(seq) as min, max(seq) as max from ${partitionName(month)}`,
    );
    const row = rows[0]!;
    return row.min === null || row.max === null ? null : { min: Number(row.min), max: Number(row.max) };
  }

  /** When the month's newest record was stored (rows from before `recorded_at` existed count by their time). */
  async newestStored(month: Date): Promise<Date | null> {
    const { rows } = await this.db.raw<{ rows: { newest: Date | null }[] }>(
      `select max(coalesce(recorded_at, time)) as newest from ${partitionName(month)}`,
    );
    return rows[0]!.newest;
  }

  /** The stored hash of a record. */
  async hashAt(seq: number): Promise<string | undefined> {
    const { rows } = await this.db.raw<{ rows: { hash: string }[] }>('select hash from decisions where seq = ?', [seq]);
    return rows[0]?.hash;
  }

  /** Drops the month's partition; returns how many records went with it. */
  async drop(month: Date): Promise<DroppedPartition> {
    const name = partitionName(month);
    await this.db.raw(`lock table ${name} in access exclusive mode`);
    const { rows } = await this.db.raw<{ rows: { records: string }[] }>(`select count(*) as records from ${name}`);
    await this.db.raw(`update decision_chain_anchor set pruned_before = greatest(pruned_before, ?::timestamptz)`, [
      addMonths(month, 1).toISOString(),
    ]);
    await this.db.raw(`drop table ${name}`);
    return { name, records: Number(rows[0]!.records) };
  }

  /**
   * Moves the verification anchor to the newest record retention removed (every record up to
   * it is gone), saying when and under which retention, signed when a key is at hand.
   */
  async moveAnchor(anchor: {
    seq: number;
    hash: string;
    movedAt: Date;
    retentionDays: number;
    keyId: string | null;
    signature: string | null;
  }): Promise<void> {
    await this.db.raw(
      `update decision_chain_anchor set seq = ?, hash = ?, moved_at = ?, retention_days = ?, key_id = ?, signature = ? where seq < ?`,
      [anchor.seq, anchor.hash, anchor.movedAt, anchor.retentionDays, anchor.keyId, anchor.signature, anchor.seq],
    );
  }
}
