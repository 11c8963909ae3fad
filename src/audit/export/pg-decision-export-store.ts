// What `decisions export` reads: for each chain, the contiguous run of positions that a time
// window covers, its records page by page (with the canonical content verification hashes), and
// the chain's newest signed checkpoint inside the run.
import type { Knex } from 'knex';
import type { ChainRow } from '../chain/decision-chain-verifier';
import type { ExportCheckpoint } from './decision-export-file';
import { PgDecisionQueryStore } from '../store/pg-decision-query-store';

export class PgDecisionExportStore {
  private readonly records: PgDecisionQueryStore;

  constructor(private readonly db: Knex) {
    this.records = new PgDecisionQueryStore(db);
  }

  /**
   * Per chain (by name), the first and last position of the records stamped in [since, until).
   * Everything between them is exported, so each run verifies link by link; it may hold a few
   * records stamped outside the window (committed late, e.g. from a spool).
   */
  async chainRanges(since: Date, until: Date | undefined): Promise<{ chain: string; first: number; last: number }[]> {
    const query = this.db('decisions')
      .select('chain')
      .min({ first: 'chain_seq' })
      .max({ last: 'chain_seq' })
      .where('time', '>=', since.toISOString())
      .groupBy('chain')
      .orderByRaw('chain collate "C"');
    if (until) query.where('time', '<', until.toISOString());
    const rows = (await query) as { chain: string; first: string; last: string }[];
    return rows.map((row) => ({ chain: row.chain, first: Number(row.first), last: Number(row.last) }));
  }

  /** The chain's records with position in (afterSeq, throughSeq], in order. */
  page(chain: string, afterSeq: number, throughSeq: number): Promise<ChainRow[]> {
    return this.records.chainPage(chain, afterSeq, throughSeq);
  }

  /** The chain's newest checkpoint with seq in [first, last]. */
  async newestCheckpoint(chain: string, first: number, last: number): Promise<ExportCheckpoint | null> {
    const row = (await this.db('decision_checkpoints')
      .where({ chain })
      .whereBetween('seq', [first, last])
      .orderBy('seq', 'desc')
      .first()) as { seq: string; hash: string; signed_at: Date; prev_seq: string | null; key_id: string; signature: string } | undefined;
    if (!row) return null;
    return {
      seq: Number(row.seq),
      hash: row.hash,
      signed_at: row.signed_at.toISOString(),
      prev_seq: row.prev_seq === null ? null : Number(row.prev_seq),
      key_id: row.key_id,
      signature: row.signature,
    };
  }
}
