// The monthly partitions of `decisions` (`decisions_y2026m11` holds November 2026, UTC):
// created ahead of time and on demand, and dropped whole when retention says so. Dropping
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

  /**
   * Drops the month's partition. Before it goes, the anchor moves to its newest chained
   * record (if newer than the anchor), so `verify` knows where the remaining chain begins.
   */
  async drop(month: Date): Promise<DroppedPartition> {
    const name = partitionName(month);
    await this.db.raw(`lock table ${name} in access exclusive mode`);
    const { rows } = await this.db.raw<{ rows: { records: string; seq: string | null; hash: string | null }[] }>(
      `select (select count(*) from ${name}) as records, newest.seq, newest.hash
         from (select 1) one left join (select seq, hash from ${name} order by seq desc limit 1) newest on true`,
    );
    const newest = rows[0]!;
    const prunedBefore = addMonths(month, 1).toISOString();
    if (newest.seq !== null) {
      await this.db.raw(
        `update decision_chain_anchor set seq = ?, hash = ? where seq < ?`,
        [newest.seq, newest.hash, newest.seq],
      );
    }
    await this.db.raw(`update decision_chain_anchor set pruned_before = greatest(pruned_before, ?::timestamptz)`, [prunedBefore]);
    await this.db.raw(`drop table ${name}`);
    return { name, records: Number(newest.records) };
  }
}
