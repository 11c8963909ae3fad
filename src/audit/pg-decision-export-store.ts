// What `decisions export` reads: the contiguous run of seq that a time window covers, its
// records page by page (with the canonical content verification hashes), and the newest
// signed checkpoint inside the run.
import type { Knex } from 'knex';
import type { ExportEnd } from './decision-export-file';
import { PgDecisionQueryStore } from './pg-decision-query-store';

export class PgDecisionExportStore {
  private readonly records: PgDecisionQueryStore;

  constructor(private readonly db: Knex) {
    this.records = new PgDecisionQueryStore(db);
  }

  /**
   * The first and last seq of the records stamped in [since, until). Everything between them
   * is exported, so the run verifies link by link; it may hold a few records stamped outside
   * the window (committed late, e.g. from a spool).
   */
  async seqRange(since: Date, until: Date | undefined): Promise<{ first: number; last: number } | undefined> {
    const query = this.db('decisions').min({ first: 'seq' }).max({ last: 'seq' }).where('time', '>=', since.toISOString());
    if (until) query.where('time', '<', until.toISOString());
    const row = (await query.first()) as { first: string | null; last: string | null } | undefined;
    return row?.first == null || row.last == null ? undefined : { first: Number(row.first), last: Number(row.last) };
  }

  /** Records with seq in (afterSeq, throughSeq], in seq order. */
  page(afterSeq: number, throughSeq: number) {
    return this.records.chainPage(afterSeq, throughSeq);
  }

  /** The newest checkpoint with seq in [first, last]. */
  async newestCheckpoint(first: number, last: number): Promise<ExportEnd['checkpoint']> {
    const row = (await this.db('decision_checkpoints').whereBetween('seq', [first, last]).orderBy('seq', 'desc').first()) as
      { seq: string; hash: string; signed_at: Date; prev_seq: string | null; key_id: string; signature: string } | undefined;
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
