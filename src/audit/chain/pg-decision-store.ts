// Appends decision records to this instance's hash chain in `decisions`. One transaction per
// batch, under the chain's own advisory lock, reads the chain head, hashes and inserts the new
// records and moves the head: processes sharing an instance id queue up and the chain never
// forks, while other instances append to their own chains without waiting. Records whose id is
// already stored (in any chain, under any time: `decision_ids` keys the id alone) are skipped,
// so replaying a batch (from the spool) is exactly once.
import type { Knex } from 'knex';
import { DependencyError } from '../../base/errors';
import { chainHash, GENESIS_HASH, LEGACY_CHAIN, type PreparedDecision } from './decision-chain';
import { monthOf, PARTITION_LOCK, PgDecisionPartitions } from '../store/pg-decision-partitions';

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
  'id, time, request_id, subject, user_id, organization, action, resource, method, path, allow, status, reasons, policy_revision, eval_latency_us, input, directory_version, code, code_params, chain, chain_seq, prev_hash, hash';

/** The first key of each chain's append lock (the two-int form: the second is hashtext(chain)). */
export const CHAIN_LOCK_SPACE = 706_572_401;

export class PgDecisionStore implements DecisionStore {
  /** Months whose partition this process has made sure of. */
  private readonly knownMonths = new Set<number>();

  /** `chain`: this instance's (audit.instance_id); never the legacy chain. */
  constructor(
    private readonly db: Knex | Knex.Transaction,
    readonly chain: string,
  ) {
    if (chain === LEGACY_CHAIN) throw new Error(`the ${LEGACY_CHAIN} chain takes no new records: give this instance another id`);
  }

  async append(batch: readonly PreparedDecision[]): Promise<AppendResult> {
    if (batch.length === 0) return { inserted: 0, skipped: 0 };
    try {
      return await this.db.transaction(async (trx) => {
        await trx.raw(`set local statement_timeout = ${STATEMENT_TIMEOUT_MS}`);
        await trx.raw('select pg_advisory_xact_lock(?, hashtext(?))', [CHAIN_LOCK_SPACE, this.chain]);
        await this.ensurePartitions(trx, batch);
        const fresh = await this.unseen(trx, batch);
        if (fresh.length > 0) await this.appendToChain(trx, fresh);
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
      const partitions = new PgDecisionPartitions(trx);
      if (!(await partitions.exists(month))) {
        await trx.raw('select pg_advisory_xact_lock(?)', [PARTITION_LOCK]);
        await partitions.ensure(month);
      }
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

  private async appendToChain(trx: Knex.Transaction, records: readonly PreparedDecision[]): Promise<void> {
    const head = await this.head(trx);
    let seq = head.seq;
    let prevHash = head.hash;
    const chain = JSON.stringify(this.chain);
    const json: string[] = [];
    for (const record of records) {
      seq += 1;
      const hash = chainHash(prevHash, this.chain, seq, record.content);
      // The canonical content is a JSON object: the chain fields join it as members.
      json.push(`${record.content.slice(0, -1)},"chain":${chain},"chain_seq":${seq},"prev_hash":"${prevHash}","hash":"${hash}"}`);
      prevHash = hash;
    }
    // One statement and one parameter whatever the batch size; dry_run is only in the content
    // when true. The global seq comes from the sequence, in the batch's order (a function scan
    // yields the array in order; the CTE is evaluated once). The ids are claimed in the same
    // statement: decision_ids' key refuses a repeat.
    await trx.raw(
      `with batch as (select *, nextval('decision_seq') as next_seq from json_populate_recordset(null::decisions, ?::json)),
         claimed as (insert into decision_ids (id, seq) select id, next_seq from batch)
       insert into decisions (${COLUMNS}, seq, dry_run) select ${COLUMNS}, next_seq, coalesce(dry_run, false) from batch`,
      [`[${json.join(',')}]`],
    );
    await trx.raw('update decision_chain_head set seq = ?, hash = ? where chain = ?', [seq, prevHash, this.chain]);
  }

  /**
   * The chain's head, made (with its anchor) on the chain's first append. It also gives the
   * transaction its id before it draws a seq, which is what lets a reader of the log (the tail)
   * know when every seq drawn so far is either committed or never will be.
   */
  private async head(trx: Knex.Transaction): Promise<{ seq: number; hash: string }> {
    const read = async () =>
      (
        await trx.raw<{ rows: { seq: string; hash: string }[] }>(
          'select seq, hash, pg_current_xact_id() from decision_chain_head where chain = ?',
          [this.chain],
        )
      ).rows[0];
    const head = await read();
    if (head) return { seq: Number(head.seq), hash: head.hash };
    await trx.raw('insert into decision_chain_head (chain, seq, hash) values (?, 0, ?) on conflict do nothing', [this.chain, GENESIS_HASH]);
    await trx.raw('insert into decision_chain_anchor (chain, seq, hash) values (?, 0, ?) on conflict do nothing', [
      this.chain,
      GENESIS_HASH,
    ]);
    const made = await read();
    if (!made) throw new Error(`the head of decision chain ${this.chain} could not be created`);
    return { seq: Number(made.seq), hash: made.hash };
  }
}
