// Appends decision records to the hash chain in `decisions`. One transaction per batch, under
// an advisory lock, reads the chain head, hashes and inserts the new records and moves the
// head: several gateways appending at once queue up and the chain never forks. Records whose
// id is already stored (under any time: `decision_ids` keys the id alone) are skipped, so
// replaying a batch (from the spool) is exactly once.
import type { Knex } from 'knex';
import { DependencyError } from '../base/errors';
import { chainHash, type PreparedDecision } from './decision-chain';
import { DECISION_LOG_LOCK, monthOf, PgDecisionPartitions } from './pg-decision-partitions';

export interface AppendResult {
  inserted: number;
  /** Records already in the chain (a replay after an acknowledgement was lost). */
  skipped: number;
}

export interface DecisionStore {
  /** Appends in order, atomically: all of the batch's new records or none. */
  append(batch: readonly PreparedDecision[]): Promise<AppendResult>;
}

// A hung database must not hold records in memory for long: the batch goes to the spool instead.
const STATEMENT_TIMEOUT_MS = 10_000;

const COLUMNS =
  'id, time, request_id, subject, user_id, organization, action, resource, method, path, allow, status, reasons, policy_revision, eval_latency_us, input, directory_version, code, code_params, seq, prev_hash, hash';

export class PgDecisionStore implements DecisionStore {
  /** Months whose partition this process has made sure of. */
  private readonly knownMonths = new Set<number>();

  constructor(private readonly db: Knex | Knex.Transaction) {}

  async append(batch: readonly PreparedDecision[]): Promise<AppendResult> {
    if (batch.length === 0) return { inserted: 0, skipped: 0 };
    try {
      return await this.db.transaction(async (trx) => {
        await trx.raw(`set local statement_timeout = ${STATEMENT_TIMEOUT_MS}`);
        await trx.raw('select pg_advisory_xact_lock(?)', [DECISION_LOG_LOCK]);
        await this.ensurePartitions(trx, batch);
        const fresh = await this.unseen(trx, batch);
        if (fresh.length > 0) await this.chain(trx, fresh);
        return { inserted: fresh.length, skipped: batch.length - fresh.length };
      });
    } catch (error) {
      // A partition dropped by retention since we created it: check again on the retry.
      this.knownMonths.clear();
      throw new DependencyError(`could not write ${batch.length} decision records to PostgreSQL`, { cause: error });
    }
  }

  private async ensurePartitions(trx: Knex.Transaction, batch: readonly PreparedDecision[]): Promise<void> {
    for (const record of batch) {
      const month = monthOf(record.time);
      if (this.knownMonths.has(month.getTime())) continue;
      await new PgDecisionPartitions(trx).ensure(month);
      this.knownMonths.add(month.getTime());
    }
  }

  /** The batch without the records already stored, under any time (and without repeats within it). */
  private async unseen(trx: Knex.Transaction, batch: readonly PreparedDecision[]): Promise<PreparedDecision[]> {
    const { rows } = await trx.raw<{ rows: { id: string }[] }>(`select id from decision_ids where id = any(?::uuid[])`, [
      `{${batch.map((record) => record.id).join(',')}}`,
    ]);
    // PostgreSQL returns uuids in lower case; a record may spell its id in upper case.
    const seen = new Set(rows.map((row) => row.id));
    return batch.filter((record) => {
      const id = record.id.toLowerCase();
      if (seen.has(id)) return false;
      seen.add(id);
      return true;
    });
  }

  private async chain(trx: Knex.Transaction, records: readonly PreparedDecision[]): Promise<void> {
    const { rows } = await trx.raw<{ rows: { seq: string; hash: string }[] }>('select seq, hash from decision_chain_head');
    const head = rows[0];
    if (!head) throw new Error('decision_chain_head is empty: the decision chain migration has not run');
    let seq = Number(head.seq);
    let prevHash = head.hash;
    const json: string[] = [];
    for (const record of records) {
      seq += 1;
      const hash = chainHash(prevHash, seq, record.content);
      // The canonical content is a JSON object: the chain fields join it as members.
      json.push(`${record.content.slice(0, -1)},"seq":${seq},"prev_hash":"${prevHash}","hash":"${hash}"}`);
      prevHash = hash;
    }
    // One statement and one parameter whatever the batch size; dry_run is only in the content
    // when true. The ids are claimed in the same statement: decision_ids' key refuses a repeat.
    await trx.raw(
      `with batch as (select * from json_populate_recordset(null::decisions, ?::json)),
         claimed as (insert into decision_ids (id, seq) select id, seq from batch)
       insert into decisions (${COLUMNS}, dry_run) select ${COLUMNS}, coalesce(dry_run, false) from batch`,
      [`[${json.join(',')}]`],
    );
    await trx.raw('update decision_chain_head set seq = ?, hash = ?', [seq, prevHash]);
  }
}
