// The signed checkpoints of the decision chains (`decision_checkpoints`, a run per chain) and
// each chain's anchor row as verification reads them: written one at a time per chain, read in
// seq order.
import type { Knex } from 'knex';
import { GENESIS_HASH } from './decision-chain';

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

/** The first key of each chain's checkpoint lock (two-int form, the second is hashtext(chain)): writers of one chain take turns. */
export const CHECKPOINT_LOCK_SPACE = 706_572_403;

interface CheckpointRow {
  seq: string;
  hash: string;
  signed_at: Date;
  prev_seq: string | null;
  key_id: string;
  signature: string;
}

interface AnchorRow {
  seq: string;
  hash: string;
  moved_at: Date | null;
  retention_days: number | null;
  key_id: string | null;
  signature: string | null;
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
   * With the chain's checkpoint lock held: gives its head and newest checkpoint to `decide`, and
   * stores what it returns unless a checkpoint of that seq exists (another process's). Nothing
   * when the chain has no head (no record yet).
   */
  async write(
    chain: string,
    decide: (head: ChainHead, newest: StoredCheckpoint | undefined) => StoredCheckpoint | undefined,
  ): Promise<StoredCheckpoint | undefined> {
    return this.db.transaction(async (trx) => {
      await trx.raw('select pg_advisory_xact_lock(?, hashtext(?))', [CHECKPOINT_LOCK_SPACE, chain]);
      const head = await trx<{ chain: string; seq: string; hash: string }>('decision_chain_head').where({ chain }).first('seq', 'hash');
      if (!head) return undefined;
      const newest = (await trx('decision_checkpoints').where({ chain }).orderBy('seq', 'desc').first()) as CheckpointRow | undefined;
      const checkpoint = decide({ seq: Number(head.seq), hash: head.hash }, newest ? fromRow(newest) : undefined);
      if (!checkpoint) return undefined;
      const inserted = (await trx('decision_checkpoints')
        .insert({
          chain,
          seq: checkpoint.seq,
          hash: checkpoint.hash,
          signed_at: checkpoint.signedAt,
          prev_seq: checkpoint.prevSeq,
          key_id: checkpoint.keyId,
          signature: checkpoint.signature,
        })
        .onConflict(['chain', 'seq'])
        .ignore()
        .returning('seq')) as unknown[];
      return inserted.length > 0 ? checkpoint : undefined;
    });
  }

  /** The chain's checkpoints with seq > afterSeq, oldest first. */
  async page(chain: string, afterSeq: number, limit: number): Promise<StoredCheckpoint[]> {
    const rows = (await this.db('decision_checkpoints')
      .where({ chain })
      .andWhere('seq', '>', afterSeq)
      .orderBy('seq')
      .limit(limit)) as CheckpointRow[];
    return rows.map(fromRow);
  }

  /** The stored hash of each of these positions of the chain that still has a record. */
  async hashesAt(chain: string, seqs: readonly number[]): Promise<Map<number, string>> {
    if (seqs.length === 0) return new Map();
    const rows = (await this.db('decisions').select('chain_seq', 'hash').where({ chain }).whereIn('chain_seq', seqs)) as {
      chain_seq: string;
      hash: string;
    }[];
    return new Map(rows.map((row) => [Number(row.chain_seq), row.hash]));
  }

  /** The chain's anchor; a chain without a row (none was ever made) starts at the genesis hash. */
  async anchor(chain: string): Promise<StoredAnchor> {
    const row = await this.db<AnchorRow & { chain: string }>('decision_chain_anchor')
      .where({ chain })
      .first('seq', 'hash', 'moved_at', 'retention_days', 'key_id', 'signature');
    if (!row) return { seq: 0, hash: GENESIS_HASH, movedAt: null, retentionDays: null, keyId: null, signature: null };
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
