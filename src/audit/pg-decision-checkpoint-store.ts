// The signed checkpoints of the decision chain (`decision_checkpoints`) and the anchor row as
// verification reads them: written one at a time across instances, read in seq order.
import type { Knex } from 'knex';

export interface StoredCheckpoint {
  seq: number;
  hash: string;
  signedAt: Date;
  prevSeq: number | null;
  keyId: string;
  /** base64 Ed25519 over checkpointText. */
  signature: string;
}

export interface StoredAnchor {
  seq: number;
  hash: string;
  /** Null until a retention run moved it. */
  movedAt: Date | null;
  retentionDays: number | null;
  keyId: string | null;
  signature: string | null;
}

export interface ChainHead {
  seq: number;
  hash: string;
}

/** Serializes checkpoint writers, so each new checkpoint names the newest one before it. */
export const CHECKPOINT_LOCK = 7_065_724_307_003;

interface CheckpointRow {
  seq: string;
  hash: string;
  signed_at: Date;
  prev_seq: string | null;
  key_id: string;
  signature: string;
}

const fromRow = (row: CheckpointRow): StoredCheckpoint => ({
  seq: Number(row.seq),
  hash: row.hash,
  signedAt: row.signed_at,
  prevSeq: row.prev_seq === null ? null : Number(row.prev_seq),
  keyId: row.key_id,
  signature: row.signature,
});

export class PgDecisionCheckpointStore {
  constructor(private readonly db: Knex) {}

  /**
   * With the checkpoint lock held: gives the chain head and the newest checkpoint to `decide`,
   * and stores what it returns unless a checkpoint of that seq exists (another instance's).
   */
  async write(
    decide: (head: ChainHead, newest: StoredCheckpoint | undefined) => StoredCheckpoint | undefined,
  ): Promise<StoredCheckpoint | undefined> {
    return this.db.transaction(async (trx) => {
      await trx.raw('select pg_advisory_xact_lock(?)', [CHECKPOINT_LOCK]);
      const head = await trx('decision_chain_head').first('seq', 'hash');
      if (!head) throw new Error('decision_chain_head is empty: the decision chain migration has not run');
      const newest = (await trx<CheckpointRow>('decision_checkpoints').orderBy('seq', 'desc').first()) as CheckpointRow | undefined;
      const checkpoint = decide({ seq: Number(head.seq), hash: head.hash }, newest ? fromRow(newest) : undefined);
      if (!checkpoint) return undefined;
      const inserted = await trx('decision_checkpoints')
        .insert({
          seq: checkpoint.seq,
          hash: checkpoint.hash,
          signed_at: checkpoint.signedAt,
          prev_seq: checkpoint.prevSeq,
          key_id: checkpoint.keyId,
          signature: checkpoint.signature,
        })
        .onConflict('seq')
        .ignore()
        .returning('seq');
      return inserted.length > 0 ? checkpoint : undefined;
    });
  }

  /** Checkpoints with seq > afterSeq, oldest first. */
  async page(afterSeq: number, limit: number): Promise<StoredCheckpoint[]> {
    const rows = (await this.db('decision_checkpoints').where('seq', '>', afterSeq).orderBy('seq').limit(limit)) as CheckpointRow[];
    return rows.map(fromRow);
  }

  /** The stored hash of each of these seqs that still has a record. */
  async hashesAt(seqs: readonly number[]): Promise<Map<number, string>> {
    if (seqs.length === 0) return new Map();
    const rows = (await this.db('decisions').select('seq', 'hash').whereIn('seq', seqs)) as { seq: string; hash: string }[];
    return new Map(rows.map((row) => [Number(row.seq), row.hash]));
  }

  async anchor(): Promise<StoredAnchor> {
    const row = (await this.db('decision_chain_anchor').first('seq', 'hash', 'moved_at', 'retention_days', 'key_id', 'signature')) as
      | { seq: string; hash: string; moved_at: Date | null; retention_days: number | null; key_id: string | null; signature: string | null }
      | undefined;
    if (!row) throw new Error('the decision chain tables are empty: run `portcullis migrate`');
    return {
      seq: Number(row.seq),
      hash: row.hash,
      movedAt: row.moved_at,
      retentionDays: row.retention_days,
      keyId: row.key_id,
      signature: row.signature,
    };
  }
}
