// Appends decision records to this instance's hash chain in `decisions`, under the chain's own
// advisory lock: processes sharing an instance id queue up and the chain never forks, while
// other instances append to their own chains without waiting. Records whose id is already
// stored (in any chain, under any time: `decision_ids` keys the id alone) are skipped, so
// replaying a batch (from the spool) is exactly once.
//
// A batch is one statement when this process knows the chain's head (it moved it last): the
// lock, the records and the head's move, guarded by the head it expects. Otherwise (the first
// batch, a new month, another process of this instance moved the head, an id already stored,
// any failure before) it is one transaction that reads the head and the stored ids first.
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { Knex } from 'knex';
import { DependencyError } from '../../base/errors';
import { statementName } from '../../db/statement-name';
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

export interface PgDecisionStoreOptions {
  /** How long one statement, and the wait for the chain's lock, may take. Default 10 s. */
  timeoutMs?: number;
}

/**
 * The stored columns a record's canonical content gives, but its input: the chain's own columns
 * and the input's text (input_text) are sent beside it.
 */
const CONTENT_COLUMNS =
  'id, time, request_id, subject, user_id, organization, action, resource, method, path, allow, status, reasons, policy_revision, eval_latency_us, directory_version, code, code_params';

/**
 * Records hashed between two turns of the event loop: a hash is a few µs, so a batch of 500
 * (a backlog after PostgreSQL was away) hashed at once would hold requests back for
 * milliseconds; a slice this size stays well under one.
 */
const HASH_SLICE = 64;

/** The first key of each chain's append lock (the two-int form: the second is hashtext(chain)). */
export const CHAIN_LOCK_SPACE = 706_572_401;

// In the transaction a batch is four statements besides BEGIN and COMMIT, and the last three are
// the same text every time. The time limits and the lock are one: statement_timeout only applies from the
// next statement, so lock_timeout (set before the lock in the same statement) bounds the wait.
// The lock is not taken in the statement that reads the head: a statement sees the data as of
// its start, so a head moved while it waited for the lock would be missed and the chain fork.
const lockSql = (timeoutMs: number) => `select pg_advisory_xact_lock(?, hashtext(?))
  from (select set_config('statement_timeout', '${timeoutMs}', true), set_config('lock_timeout', '${timeoutMs}', true)) as limits`;

// The ids already stored and the head, in one statement. The chain's lock, held from before the
// seq is drawn (in APPEND_SQL) until the end, is what lets a reader of the log (the tail,
// CommittedHorizon) know when every seq drawn so far is committed or never will be.
const READ_SQL = `select h.seq, h.hash,
    array(select id::text from decision_ids where id = any(?::uuid[])) as seen
  from (select 1) as one left join decision_chain_head h on h.chain = ?`;

// What both ways of appending end with, after a `batch` CTE (the records, each with its
// next_seq): the inputs, the hashes, the ids claimed and the rows inserted. Its parameters: the
// inputs, the hashes, then the chain and the head's position before the batch. Four parameters
// whatever the batch size: the records' canonical contents as one JSON array (in `batch`), each
// with its input left out (null); their inputs' canonical texts, one a line (canonical JSON has
// no line break), stored as text: parsing them into jsonb was about a quarter of PostgreSQL's CPU
// per record (BENCHMARKS.md, sixteenth round), and a reader that wants the input parses the one it
// reads; and their hashes as one text array (the head's first: record n's prev_hash is element n,
// its hash element n + 1), so no record's text is copied to add the chain fields. dry_run is
// only in the content when true. The ids are claimed in the same statement: decision_ids' key
// refuses a repeat.
const CLAIM_AND_INSERT = `inputs as (select input, position from unnest(string_to_array(?::text, E'\\n')) with ordinality as inputs(input, position)),
  hashes as (select ?::text[] as hash),
  claimed as (insert into decision_ids (id, seq) select id, next_seq from batch)
  insert into decisions (${CONTENT_COLUMNS}, input_text, chain, chain_seq, prev_hash, hash, seq, dry_run)
  select ${CONTENT_COLUMNS}, inputs.input, ?, ?::bigint + ordinality, hashes.hash[ordinality::int], hashes.hash[ordinality::int + 1], next_seq, coalesce(dry_run, false)
  from batch join inputs on inputs.position = batch.ordinality, hashes`;

// The append in the transaction that read the head. The array is read as jsonb, parsed once: as
// json it was checked, parsed again into records and each jsonb column (the input) parsed a
// third time: ~15 % of PostgreSQL's CPU per record. The global seq comes from the sequence, in
// the batch's order (a function scan yields the array in order; the CTE is evaluated once). The
// head moves with it.
const APPEND_SQL = `with batch as (
    select *, nextval('decision_seq') as next_seq from jsonb_populate_recordset(null::decisions, ?::jsonb) with ordinality as record
  ),
  moved as (update decision_chain_head set seq = ?, hash = ? where chain = ?),
  ${CLAIM_AND_INSERT}`;

// The batch in one statement, for a process that knows the head. The lock comes first: the
// head's move waits for it (its one-time filter reads `lock`), and so do the records, whose seq
// is drawn from rows joined with it. Its wait is bounded by lock_timeout, set before it in the
// same statement (statement_timeout would only apply from the next). The head moves only from
// the seq and hash expected, read again after the lock (an UPDATE re-reads a row changed since
// the statement began): otherwise nothing is written and no seq is drawn, and the transaction
// sorts it out. A batch with an id stored already fails on decision_ids' key, and the
// transaction sorts that out too (its seqs are lost, a gap in the global seq as after any
// rollback; a batch is retried by the transaction, so in the one statement it is rare).
// It is a named (prepared) statement: parsing and planning it took PostgreSQL about as long as
// writing a batch of ten (`BENCHMARKS.md`, tenth round); each pooled connection now plans it once
// and keeps the plan. So it looks nothing up by a table's size: a check of the batch's ids
// against decision_ids, planned while that table was small, read it whole with every batch once
// it had grown (2.5 times PostgreSQL's CPU per request, in the same round).
const appendAtOnceSql = (timeoutMs: number) => `with limits as materialized (select set_config('lock_timeout', '${timeoutMs}', true)),
  lock as materialized (select pg_advisory_xact_lock(?, hashtext(?)) from limits),
  moved as (
    update decision_chain_head set seq = ?, hash = ?
    where chain = ? and seq = ? and hash = ? and exists (select from lock)
    returning 1
  ),
  batch as (
    select record.*, nextval('decision_seq') as next_seq
    from jsonb_populate_recordset(null::decisions, ?::jsonb) with ordinality as record, lock
    where exists (select from moved)
  ),
  ${CLAIM_AND_INSERT}`;

/** PostgreSQL's SQLSTATE for a unique key refusing a row. */
const UNIQUE_VIOLATION = '23505';

export class PgDecisionStore implements DecisionStore {
  /** Months whose partition this process has made sure of. */
  private readonly knownMonths = new Set<number>();

  private readonly lockSql: string;

  private readonly appendAtOnceSql: string;

  /** The one statement's name on each connection: its text's, as the text embeds the timeout. */
  private readonly appendAtOnceName: string;

  private readonly timeoutMs: number;

  /**
   * The chain's head as this process's last append left it: what the next batch expects, so it
   * can be one statement. Unknown at first and after anything failed (a statement that timed
   * out may still have committed).
   */
  private head: ChainHead | undefined;

  /** `chain`: this instance's (audit.instance_id); never the legacy chain. */
  constructor(
    private readonly db: Knex | Knex.Transaction,
    readonly chain: string,
    options: PgDecisionStoreOptions = {},
  ) {
    if (chain === LEGACY_CHAIN) throw new Error(`the ${LEGACY_CHAIN} chain takes no new records: give this instance another id`);
    const timeoutMs = options.timeoutMs ?? STATEMENT_TIMEOUT_MS;
    if (!Number.isInteger(timeoutMs) || timeoutMs <= 0)
      throw new Error(`the decision store's timeout must be a positive whole number of ms, not ${timeoutMs}`);
    this.timeoutMs = timeoutMs;
    this.lockSql = lockSql(timeoutMs);
    this.appendAtOnceSql = appendAtOnceSql(timeoutMs);
    this.appendAtOnceName = statementName('decision_append', this.appendAtOnceSql);
  }

  async append(batch: readonly PreparedDecision[]): Promise<AppendResult> {
    if (batch.length === 0) return { inserted: 0, skipped: 0 };
    const expected = this.head;
    this.head = undefined;
    try {
      if (expected && this.inKnownMonths(batch)) {
        const after = await this.appendAtOnce(expected, batch);
        if (after) {
          this.head = after;
          return { inserted: batch.length, skipped: 0 };
        }
      }
      let after: ChainHead | undefined;
      const result = await this.db.transaction(async (trx) => {
        await trx.raw(this.lockSql, [CHAIN_LOCK_SPACE, this.chain]);
        await this.ensurePartitions(trx, batch);
        const { head, seen } = await this.read(trx, batch);
        const fresh = unseen(batch, seen);
        after = fresh.length > 0 ? await this.appendToChain(trx, head, fresh) : head;
        return { inserted: fresh.length, skipped: batch.length - fresh.length };
      });
      this.head = after;
      return result;
    } catch (error) {
      // A partition dropped by retention since we created it: check again on the retry.
      this.knownMonths.clear();
      throw new DependencyError(`could not write ${batch.length} decision records to PostgreSQL`, { cause: error });
    }
  }

  private inKnownMonths(batch: readonly PreparedDecision[]): boolean {
    return batch.every((record) => this.knownMonths.has(monthOf(record.time).getTime()));
  }

  /**
   * The batch as one statement after `head`: the head it leaves, or undefined when it wrote
   * nothing because the head has moved or one of its ids is stored already.
   */
  private async appendAtOnce(head: ChainHead, batch: readonly PreparedDecision[]): Promise<ChainHead | undefined> {
    const { hashes, last } = await this.hash(head, batch);
    try {
      const { rowCount } = await this.db
        .raw<{ rowCount: number | null }>(this.appendAtOnceSql, [
          CHAIN_LOCK_SPACE,
          this.chain,
          last.seq,
          last.hash,
          this.chain,
          head.seq,
          head.hash,
          contentArray(batch),
          inputLines(batch),
          hashes,
          this.chain,
          head.seq,
        ])
        .options({ name: this.appendAtOnceName })
        // The lock's wait has timeoutMs (lock_timeout), and so has the writing after it; the
        // second behind the two keeps a slow start from passing for either.
        .timeout(2 * this.timeoutMs + 1_000, { cancel: true });
      return rowCount === batch.length ? last : undefined;
    } catch (error) {
      if ((error as { code?: unknown }).code === UNIQUE_VIOLATION) return undefined;
      throw error;
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

  /** The chain's head, made (with its anchor) on the chain's first append, and which of the batch's ids are stored already. */
  private async read(trx: Knex.Transaction, batch: readonly PreparedDecision[]): Promise<{ head: ChainHead; seen: Set<string> }> {
    const ids = idArray(batch);
    const select = async () =>
      (await trx.raw<{ rows: { seq: string | null; hash: string | null; seen: string[] }[] }>(READ_SQL, [ids, this.chain])).rows[0]!;
    let row = await select();
    if (row.seq === null || row.hash === null) {
      await trx.raw('insert into decision_chain_head (chain, seq, hash) values (?, 0, ?) on conflict do nothing', [
        this.chain,
        GENESIS_HASH,
      ]);
      await trx.raw('insert into decision_chain_anchor (chain, seq, hash) values (?, 0, ?) on conflict do nothing', [
        this.chain,
        GENESIS_HASH,
      ]);
      row = await select();
      if (row.seq === null || row.hash === null) throw new Error(`the head of decision chain ${this.chain} could not be created`);
    }
    return { head: { seq: Number(row.seq), hash: row.hash }, seen: new Set(row.seen) };
  }

  /** Appends `records` after `head`, in the transaction that read it; the head it leaves. */
  private async appendToChain(trx: Knex.Transaction, head: ChainHead, records: readonly PreparedDecision[]): Promise<ChainHead> {
    const { hashes, last } = await this.hash(head, records);
    await trx.raw(APPEND_SQL, [contentArray(records), last.seq, last.hash, this.chain, inputLines(records), hashes, this.chain, head.seq]);
    return last;
  }

  /** The records' hashes after `head`, as a text[] literal that starts with the head's, and the head after the last. */
  private async hash(head: ChainHead, records: readonly PreparedDecision[]): Promise<{ hashes: string; last: ChainHead }> {
    let seq = head.seq;
    let hashes = head.hash;
    let prevHash = head.hash;
    for (let i = 0; i < records.length; i++) {
      if (i > 0 && i % HASH_SLICE === 0) await nextTurn();
      seq += 1;
      prevHash = chainHash(prevHash, this.chain, seq, records[i]!.content);
      hashes += `,${prevHash}`;
    }
    return { hashes: `{${hashes}}`, last: { seq, hash: prevHash } };
  }
}

/** The records' ids as a uuid[] literal. */
function idArray(records: readonly PreparedDecision[]): string {
  return `{${records.map((record) => record.id).join(',')}}`;
}

/** The records' canonical contents as one JSON array, each with its input left out (null). */
function contentArray(records: readonly PreparedDecision[]): string {
  return `[${records.map((record) => `${record.content.slice(0, record.inputStart)}null${record.content.slice(record.inputEnd)}`).join(',')}]`;
}

/** The records' inputs' canonical texts, one a line. */
function inputLines(records: readonly PreparedDecision[]): string {
  return records.map((record) => record.content.slice(record.inputStart, record.inputEnd)).join('\n');
}

interface ChainHead {
  seq: number;
  hash: string;
}

/** The batch without the records already stored, under any time (and without repeats within it). */
function unseen(batch: readonly PreparedDecision[], seen: Set<string>): PreparedDecision[] {
  // PostgreSQL returns uuids in lower case; a record may spell its id in upper case.
  return batch.filter((record) => {
    const id = record.id.toLowerCase();
    if (seen.has(id)) return false;
    seen.add(id);
    return true;
  });
}
