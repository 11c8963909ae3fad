// The monthly partitions of `decisions` (`decisions_y2026m11` holds November 2026, UTC):
// created ahead of time and on demand, and dropped whole when retention says so. The anchor
// of each chain records its newest record removed, so verification can start after it.
import type { Knex } from 'knex';

/**
 * Held (transaction-scoped) while partitions are created or dropped: by retention, and by an
 * append only when its month has no partition yet (retention creates them months ahead).
 */
export const PARTITION_LOCK = 7_065_724_307_001;

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

  /** Whether the month's partition exists; takes no lock. */
  async exists(month: Date): Promise<boolean> {
    const { rows } = await this.db.raw<{ rows: { name: string | null }[] }>('select to_regclass(?)::text as name', [
      partitionName(monthOf(month)),
    ]);
    return rows[0]?.name !== null && rows[0]?.name !== undefined;
  }

  /** Creates the month's partition unless it exists. Run under PARTITION_LOCK: concurrent creates collide. */
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

  /** Each chain's newest record in these months' partitions (one index probe per chain and month). */
  async newestPerChain(months: readonly Date[]): Promise<Map<string, { seq: number; hash: string }>> {
    const { rows: chains } = await this.db.raw<{ rows: { chain: string }[] }>('select chain from decision_chain_head');
    const newest = new Map<string, { seq: number; hash: string }>();
    for (const { chain } of chains) {
      for (const month of months) {
        const { rows } = await this.db.raw<{ rows: { chain_seq: string; hash: string }[] }>(
          `select chain_seq, hash from ${partitionName(month)} where chain = ? order by chain_seq desc limit 1`,
          [chain],
        );
        const row = rows[0];
        if (row && Number(row.chain_seq) > (newest.get(chain)?.seq ?? 0)) newest.set(chain, { seq: Number(row.chain_seq), hash: row.hash });
      }
    }
    return newest;
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
   * Forgets the ids of records with seq up to `throughSeq` (all of them gone with their
   * partitions), so the id index does not grow forever; a record replayed after that is new.
   */
  async releaseIds(throughSeq: number): Promise<void> {
    await this.db.raw('delete from decision_ids where seq <= ?', [throughSeq]);
  }

  /**
   * Moves a chain's verification anchor to its newest record retention removed (every record
   * of the chain up to it is gone), saying when and under which retention, signed when a key is at hand.
   */
  async moveAnchor(anchor: {
    chain: string;
    seq: number;
    hash: string;
    movedAt: Date;
    retentionDays: number;
    keyId: string | null;
    signature: string | null;
  }): Promise<void> {
    await this.db.raw(
      `update decision_chain_anchor set seq = ?, hash = ?, moved_at = ?, retention_days = ?, key_id = ?, signature = ? where chain = ? and seq < ?`,
      [anchor.seq, anchor.hash, anchor.movedAt, anchor.retentionDays, anchor.keyId, anchor.signature, anchor.chain, anchor.seq],
    );
  }

  /**
   * Deletes the chain's checkpoints older than the newest one before its anchor: they vouch only
   * for records retention removed. The newest one before the anchor stays, so verification can
   * still tell whether the anchor moved too early (and its successors still name it).
   */
  async pruneCheckpoints(chain: string, anchorSeq: number): Promise<number> {
    const { rowCount } = await this.db.raw<{ rowCount: number }>(
      `delete from decision_checkpoints where chain = ? and seq < (select max(seq) from decision_checkpoints where chain = ? and seq < ?)`,
      [chain, chain, anchorSeq],
    );
    return rowCount;
  }
}
