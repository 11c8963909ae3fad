// The decision log's read side: filtered, newest-first pages keyed by seq for the admin API and
// `decisions query`, one full record by id, and the seq-ordered pages that verify, replay and
// tail walk through without holding more than a page in memory.
import type { Knex } from 'knex';
import { isUuid } from '../../db/uuid';
import { GENESIS_HASH } from '../chain/decision-chain';
import type { ChainReader, ChainRow, ChainState } from '../chain/decision-chain-verifier';
import { CHAIN_LOCK_SPACE } from '../chain/pg-decision-store';

export interface DecisionFilter {
  /** The token's `sub`. */
  subject?: string | undefined;
  /** Organization slug. */
  organization?: string | undefined;
  action?: string | undefined;
  allow?: boolean | undefined;
  /** The outcome's stable code (`missing_permission`). */
  code?: string | undefined;
  /** Inclusive. */
  since?: Date | undefined;
  /** Exclusive. */
  until?: Date | undefined;
  /** Only dry runs (true) or only served requests (false). */
  dryRun?: boolean | undefined;
  /** One person, as `--user` resolved them: records of any of these users.id or token subjects. */
  user?: { ids: string[]; subjects: string[] } | undefined;
}

export interface DecisionSummary {
  id: string;
  seq: number;
  time: string;
  request_id: string;
  subject: string | null;
  user_id: string | null;
  organization: string | null;
  action: string;
  method: string;
  path: string;
  allow: boolean;
  status: number;
  reasons: string[];
  policy_revision: string | null;
  eval_latency_us: number | null;
  dry_run: boolean;
  /** The outcome's stable code and its params; null when the policy set none (or the record predates codes). */
  code?: string | null;
  code_params?: Record<string, unknown> | null;
}

export interface DecisionDetail extends DecisionSummary {
  resource: Record<string, unknown>;
  /** The directory state the decision saw (see DecisionRecord.directoryVersion); null when none was read. */
  directory_version: number | null;
  /** The policy input as stored (masked), or null when none was built (e.g. a 401). */
  input: unknown;
  /** The decision as the policy output contract spells it (design §3.4): code and params only when set. */
  result: { allow: boolean; status: number; reasons: string[]; code?: string; params?: Record<string, unknown> };
  /** The instance's chain the record belongs to, and its position there. */
  chain: string;
  chain_seq: number;
  prev_hash: string;
  hash: string;
}

export interface DecisionRows {
  decisions: DecisionSummary[];
  /** Whether older records match too. */
  more: boolean;
}

/** The columns decisionSummaryOf reads: every store that lists records selects these. */
export const DECISION_SUMMARY_COLUMNS = [
  'id',
  'seq',
  'time',
  'request_id',
  'subject',
  'user_id',
  'organization',
  'action',
  'method',
  'path',
  'allow',
  'status',
  'reasons',
  'policy_revision',
  'eval_latency_us',
  'dry_run',
  'code',
  'code_params',
];
const DETAIL = [
  ...DECISION_SUMMARY_COLUMNS.filter((column) => column !== 'dry_run'),
  'resource',
  'dry_run',
  'directory_version',
  'chain',
  'chain_seq',
  'prev_hash',
  'hash',
];

export const MAX_PAGE = 1000;

/**
 * A record's policy input: records written since migration 20261201000001 keep it as its
 * canonical text (`input_text`, always set: `null` when none was built), older ones as jsonb
 * (`input`, SQL null when none was built, never beside a text). Either reads as the same value,
 * SQL null when there is none.
 */
export const INPUT_SQL = "(case when input_text is null then input else nullif(input_text, 'null')::jsonb end)";

// A record's members in canonical order (jsonb's: shorter keys first) fall on either side of
// `input`: the keys of up to five bytes (`id`, `code`, `path`, `time`, `allow`) before it, every
// other key after it.
const BEFORE_INPUT = `(jsonb_build_object(
    'id', id, 'path', path, 'time', to_char(time at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), 'allow', allow
  ) || case when code is null then '{}'::jsonb else jsonb_build_object('code', code) end)`;
const AFTER_INPUT = `(jsonb_build_object(
    'action', action, 'method', method, 'status', status,
    'reasons', to_jsonb(reasons), 'subject', subject, 'user_id', user_id, 'resource', resource,
    'request_id', request_id, 'organization', organization, 'eval_latency_us', eval_latency_us,
    'policy_revision', policy_revision
  ) || case when dry_run then '{"dry_run": true}'::jsonb else '{}'::jsonb end
    || case when directory_version is null then '{}'::jsonb else jsonb_build_object('directory_version', directory_version) end
    || case when code_params is null then '{}'::jsonb else jsonb_build_object('code_params', code_params) end)`;

/**
 * A stored record rendered by PostgreSQL in canonical form (canonicalJson's): the hashed
 * columns as one jsonb object's text. Verification then only hashes, and the database does the
 * rendering on its own core. The input goes between the members before and after it: a record's
 * canonical text (input_text) as it is, not parsed and written again (so a text that is not the
 * one hashed, even one equal as JSON, does not verify, and rendering costs no parse); an older
 * record's jsonb as jsonb writes it, which is the text it has inside the whole object.
 */
export const CANONICAL_CONTENT_SQL = `(left(${BEFORE_INPUT}::text, -1) || ', "input": ' || coalesce(input_text, input::text, 'null')
    || ', ' || substr(${AFTER_INPUT}::text, 2))`;

/**
 * A page of `records` (a filtered query of decisions): newest first by seq, below `beforeSeq`
 * when given; one row more than `limit` says whether older ones match.
 */
export async function pageOfDecisions(records: Knex.QueryBuilder, limit: number, beforeSeq?: number): Promise<DecisionRows> {
  const query = records
    .select(DECISION_SUMMARY_COLUMNS)
    .orderBy('seq', 'desc')
    .limit(limit + 1);
  if (beforeSeq !== undefined) query.where('seq', '<', beforeSeq);
  const rows = (await query) as Record<string, unknown>[];
  return { decisions: rows.slice(0, limit).map(decisionSummaryOf), more: rows.length > limit };
}

/**
 * `records` (a filtered query of decisions) with seq in (afterSeq, throughSeq], oldest first:
 * what a reader following the log takes next, throughSeq being the CommittedHorizon's.
 */
export async function decisionsAfter(
  records: Knex.QueryBuilder,
  afterSeq: number,
  throughSeq: number,
  limit: number,
): Promise<DecisionSummary[]> {
  const rows = (await records
    .select(DECISION_SUMMARY_COLUMNS)
    .where('seq', '>', afterSeq)
    .andWhere('seq', '<=', throughSeq)
    .orderBy('seq')
    .limit(limit)) as Record<string, unknown>[];
  return rows.map(decisionSummaryOf);
}

/** A decisions row (as selected by the stores that list records) as the API's summary. */
export function decisionSummaryOf(row: Record<string, unknown>): DecisionSummary {
  return {
    id: row.id as string,
    seq: Number(row.seq),
    time: (row.time as Date).toISOString(),
    request_id: row.request_id as string,
    subject: row.subject as string | null,
    user_id: row.user_id as string | null,
    organization: row.organization as string | null,
    action: row.action as string,
    method: row.method as string,
    path: row.path as string,
    allow: row.allow as boolean,
    status: row.status as number,
    reasons: row.reasons as string[],
    policy_revision: row.policy_revision as string | null,
    eval_latency_us: row.eval_latency_us as number | null,
    dry_run: row.dry_run === true,
    code: (row.code as string | null | undefined) ?? null,
    code_params: (row.code_params as Record<string, unknown> | null | undefined) ?? null,
  };
}

export class PgDecisionQueryStore implements ChainReader {
  constructor(private readonly db: Knex | Knex.Transaction) {}

  /**
   * Newest first by seq, the order of commit within one instance's chain: a record committed
   * late (a spool replay, a batch from a slow clock) is above every page read before it. Across
   * instances a lower seq can commit after a higher one; readers that follow the log go by the
   * CommittedHorizon instead.
   */
  list(filter: DecisionFilter, options: { limit: number; beforeSeq?: number | undefined }): Promise<DecisionRows> {
    return pageOfDecisions(this.filtered(filter), Math.min(Math.max(1, options.limit), MAX_PAGE), options.beforeSeq);
  }

  async get(id: string): Promise<DecisionDetail | undefined> {
    if (!isUuid(id)) return undefined;
    const row = (await this.db('decisions')
      .select(DETAIL)
      .select(this.db.raw(`${INPUT_SQL} as input`))
      .where({ id })
      .first()) as Record<string, unknown> | undefined;
    if (!row) return undefined;
    const base = decisionSummaryOf(row);
    return {
      ...base,
      resource: row.resource as Record<string, unknown>,
      directory_version: row.directory_version === null || row.directory_version === undefined ? null : Number(row.directory_version),
      input: row.input ?? null,
      result: {
        allow: base.allow,
        status: base.status,
        reasons: base.reasons,
        ...(typeof base.code === 'string' ? { code: base.code, params: base.code_params ?? {} } : {}),
      },
      chain: row.chain as string,
      chain_seq: Number(row.chain_seq),
      prev_hash: row.prev_hash as string,
      hash: row.hash as string,
    };
  }

  /** Records with seq in (afterSeq, throughSeq], oldest first: what `tail` prints next (throughSeq from CommittedHorizon). */
  after(afterSeq: number, throughSeq: number, filter: DecisionFilter, limit: number): Promise<DecisionSummary[]> {
    return decisionsAfter(this.filtered(filter), afterSeq, throughSeq, limit);
  }

  /**
   * Where the log's global seq stands: the newest seq drawn (committed or not). With several
   * writers, seq order is not commit order: DecisionTail waits for the transactions that could
   * still commit below it before reading that far.
   */
  async seqMark(): Promise<number> {
    const { rows } = await this.db.raw<{ rows: { mark: string }[] }>(
      'select case when is_called then last_value else last_value - 1 end as mark from decision_seq',
    );
    return Number(rows[0]?.mark ?? 0);
  }

  /**
   * The appends running now in this database: the virtual transaction ids holding a chain's
   * append lock (its two-int form, CHAIN_LOCK_SPACE first). Virtual ids are never reused while
   * the server runs, so an id gone from this list is an append that has ended.
   */
  async appendsInFlight(): Promise<string[]> {
    const { rows } = await this.db.raw<{ rows: { vxid: string }[] }>(
      `select virtualtransaction as vxid from pg_locks
        where locktype = 'advisory' and classid = ?::oid and objsubid = 2 and granted
          and database = (select oid from pg_database where datname = current_database())`,
      [CHAIN_LOCK_SPACE],
    );
    return rows.map((row) => row.vxid);
  }

  /** The chain's records with position in (afterSeq, throughSeq], in order, with their canonical content. */
  async chainPage(chain: string, afterSeq: number, throughSeq: number): Promise<ChainRow[]> {
    const rows = (await this.db('decisions')
      .select('id', 'seq', 'chain_seq', 'prev_hash', 'hash', this.db.raw(`${CANONICAL_CONTENT_SQL} as content`))
      .where({ chain })
      .andWhere('chain_seq', '>', afterSeq)
      .andWhere('chain_seq', '<=', throughSeq)
      .orderBy('chain_seq')) as { id: string; seq: string; chain_seq: string; prev_hash: string; hash: string; content: string }[];
    return rows.map((row) => ({
      id: row.id,
      seq: Number(row.chain_seq),
      logSeq: Number(row.seq),
      prevHash: row.prev_hash,
      hash: row.hash,
      content: row.content,
    }));
  }

  /** Every chain with a head row, and any chain that has records without one (its head was deleted). */
  async chainStates(): Promise<ChainState[]> {
    const { rows } = await this.db.raw<{
      rows: { chain: string; head_seq: string | null; head_hash: string | null; anchor_seq: string | null; anchor_hash: string | null }[];
    }>(
      // The chains that have records: a skip scan of the (chain, chain_seq) index, one probe per chain.
      `with recursive stored as (
         (select chain from decisions order by chain limit 1)
         union all
         select (select d.chain from decisions d where d.chain > stored.chain order by d.chain limit 1) from stored where stored.chain is not null
       ), chains as (select chain from stored where chain is not null union select chain from decision_chain_head)
       select c.chain, h.seq as head_seq, h.hash as head_hash, a.seq as anchor_seq, a.hash as anchor_hash
       from chains c left join decision_chain_head h on h.chain = c.chain left join decision_chain_anchor a on a.chain = c.chain
       order by c.chain collate "C"`,
    );
    return rows.map((row) => ({
      chain: row.chain,
      head: { seq: Number(row.head_seq ?? 0), hash: row.head_hash ?? GENESIS_HASH },
      anchor: { seq: Number(row.anchor_seq ?? 0), hash: row.anchor_hash ?? GENESIS_HASH },
      ...(row.head_seq === null ? { headMissing: true } : {}),
    }));
  }

  /** The position of the chain's earliest record at or after `time`. */
  async firstSeqSince(chain: string, time: Date): Promise<number | undefined> {
    const row = (await this.db('decisions')
      .select('chain_seq')
      .where({ chain })
      .andWhere('time', '>=', time.toISOString())
      .orderBy([{ column: 'time' }, { column: 'chain_seq' }])
      .first()) as { chain_seq: string } | undefined;
    return row ? Number(row.chain_seq) : undefined;
  }

  async firstSeq(chain: string): Promise<number | undefined> {
    const row = (await this.db('decisions').where({ chain }).min({ seq: 'chain_seq' }).first()) as { seq: string | null } | undefined;
    return row?.seq === null || row?.seq === undefined ? undefined : Number(row.seq);
  }

  /** How many records a filter matches (replay's progress). */
  async count(filter: DecisionFilter): Promise<number> {
    const row = (await this.filtered(filter).count({ n: '*' }).first()) as { n: string | number } | undefined;
    return Number(row?.n ?? 0);
  }

  /** What replay needs of the records with seq > afterSeq matching the filter, oldest first. */
  async replayPage(afterSeq: number, filter: DecisionFilter, limit: number): Promise<ReplayRow[]> {
    const rows = (await this.filtered(filter)
      .select('id', 'seq', 'action', 'organization', 'allow', 'status', 'reasons', 'policy_revision', this.db.raw(`${INPUT_SQL} as input`))
      .where('seq', '>', afterSeq)
      .orderBy('seq')
      .limit(limit)) as (Omit<ReplayRow, 'seq'> & { seq: string })[];
    return rows.map((row) => ({ ...row, seq: Number(row.seq) }));
  }

  private filtered(filter: DecisionFilter): Knex.QueryBuilder {
    return whereDecisionFilter(this.db('decisions'), filter);
  }
}

/** Narrows a query of `decisions` to the records `filter` matches. */
export function whereDecisionFilter(query: Knex.QueryBuilder, filter: DecisionFilter): Knex.QueryBuilder {
  if (filter.subject !== undefined) query.where('subject', filter.subject);
  if (filter.organization !== undefined) query.where('organization', filter.organization);
  if (filter.action !== undefined) query.where('action', filter.action);
  if (filter.allow !== undefined) query.where('allow', filter.allow);
  if (filter.code !== undefined) query.where('code', filter.code);
  // As ISO-8601 UTC text: node-postgres would render a Date in the local zone, whose offset
  // for year 1 (local mean time) can be a fraction of a minute.
  if (filter.since) query.where('time', '>=', filter.since.toISOString());
  if (filter.until) query.where('time', '<', filter.until.toISOString());
  if (filter.dryRun !== undefined) query.where('dry_run', filter.dryRun);
  const user = filter.user;
  if (user)
    query.where((either) => {
      void either.whereIn('user_id', user.ids).orWhereIn('subject', user.subjects);
    });
  return query;
}

export interface ReplayRow {
  id: string;
  seq: number;
  action: string;
  organization: string | null;
  allow: boolean;
  status: number;
  reasons: string[];
  input: unknown;
  policy_revision: string | null;
}
