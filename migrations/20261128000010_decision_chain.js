// The decision log for years of records: `decisions` becomes range-partitioned by month on
// `time` (retention drops whole partitions), and every record joins a SHA-256 hash chain
// (`seq`, `prev_hash`, `hash`) whose head lives in `decision_chain_head`. Records already
// written are chained here, in (time, id) order, over the canonical form verification uses.
// The copy pages by the real timestamp through an index (never by its text, which sorts
// wrongly in a time zone's fall-back hour) and counts the rows before anything is dropped.
const { createHash } = require('node:crypto');

const GENESIS_HASH = '0'.repeat(64);
const COPY_BATCH = 5000;
const INDEXES = {
  decisions_time_index: '(time)',
  decisions_subject_time_index: '(subject, time)',
  decisions_organization_time_index: '(organization, time)',
  decisions_action_time_index: '(action, time)',
  decisions_allow_time_index: '(allow, time)',
  decisions_request_id_index: '(request_id)',
};
const COLUMNS = [
  'id',
  'time',
  'request_id',
  'subject',
  'user_id',
  'organization',
  'action',
  'resource',
  'method',
  'path',
  'allow',
  'status',
  'reasons',
  'policy_revision',
  'eval_latency_us',
  'input',
];

/** @param {import('knex').Knex} knex */
exports.up = async function up(knex) {
  await knex.raw('alter table decisions rename to decisions_unchained');
  // A database that got the dry_run column (migration ...030) before this one ran keeps it.
  const dryRun = await knex.schema.hasColumn('decisions_unchained', 'dry_run');
  const columns = dryRun ? [...COLUMNS, 'dry_run'] : COLUMNS;
  await knex.raw('alter table decisions_unchained rename constraint decisions_pkey to decisions_unchained_pkey');
  // The old indexes make way for the new table's names; the copy below walks (time, id).
  for (const name of Object.keys(INDEXES)) await knex.raw(`drop index ${name}`);
  await knex.raw('create index decisions_unchained_copy_index on decisions_unchained (time, id)');

  await knex.raw(`
    create table decisions (
      id uuid not null,
      time timestamptz not null,
      request_id text not null,
      subject text,
      user_id uuid,
      organization text,
      action text not null,
      resource jsonb not null,
      method text not null,
      path text not null,
      allow boolean not null,
      status smallint not null,
      reasons text[] not null default '{}',
      policy_revision text,
      eval_latency_us integer,
      input jsonb,
      seq bigint not null,
      prev_hash text not null,
      hash text not null,
      -- A partitioned table's keys must include the partition key; ids are random UUIDs.
      primary key (id, time)
    ) partition by range (time)`);
  // Audit questions are "what happened recently", narrowed by who, where, what or outcome;
  // verification walks the chain in seq order.
  for (const [name, indexed] of Object.entries(INDEXES)) await knex.raw(`create index ${name} on decisions ${indexed}`);
  await knex.raw('create index decisions_seq_index on decisions (seq)');
  if (dryRun) await knex.raw('alter table decisions add column dry_run boolean not null default false');

  // One row each: the newest record of the chain, and the newest record retention removed.
  await knex.raw(`
    create table decision_chain_head (
      singleton boolean primary key default true check (singleton),
      seq bigint not null,
      hash text not null
    )`);
  await knex.raw(`
    create table decision_chain_anchor (
      singleton boolean primary key default true check (singleton),
      seq bigint not null,
      hash text not null,
      pruned_before timestamptz
    )`);
  await knex.raw('insert into decision_chain_anchor (seq, hash) values (0, ?)', [GENESIS_HASH]);

  const { rows: bounds } = await knex.raw(`select min(time) as first, now() as now from decisions_unchained`);
  const now = bounds[0].now;
  const first = bounds[0].first ?? now;
  for (let month = monthStart(first); month <= addMonths(monthStart(now), 2); month = addMonths(month, 1)) {
    const next = addMonths(month, 1);
    await knex.raw(
      `create table if not exists ${partitionName(month)} partition of decisions for values from ('${month.toISOString()}') to ('${next.toISOString()}')`,
    );
  }

  // The canonical content, rendered by PostgreSQL exactly as src/audit/store/pg-decision-query-store.ts
  // (CANONICAL_CONTENT_SQL) renders it for verification.
  const canonical = `(jsonb_build_object(
      'id', id, 'path', path, 'time', to_char(time at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
      'allow', allow, 'input', input, 'action', action, 'method', method, 'status', status,
      'reasons', to_jsonb(reasons), 'subject', subject, 'user_id', user_id, 'resource', resource,
      'request_id', request_id, 'organization', organization, 'eval_latency_us', eval_latency_us,
      'policy_revision', policy_revision
    )${dryRun ? ` || case when dry_run then '{"dry_run": true}'::jsonb else '{}'::jsonb end` : ''})::text`;
  let seq = 0;
  let hash = GENESIS_HASH;
  let after = null;
  for (;;) {
    // The cursor is the timestamp's text with its offset (exact to the microsecond, which a JS
    // Date is not); ordering and comparison are on the timestamp itself, so the index serves both.
    const rows = (
      await knex.raw(
        `select u.id, u.time::text as cursor_time, ${canonical} as content
         from decisions_unchained u
         ${after ? 'where (u.time, u.id) > (?::timestamptz, ?::uuid)' : ''}
         order by u.time, u.id
         limit ${COPY_BATCH}`,
        after ? [after.cursor_time, after.id] : [],
      )
    ).rows;
    if (rows.length === 0) break;
    const chain = rows.map((row) => {
      seq += 1;
      const prevHash = hash;
      hash = createHash('sha256').update(`${prevHash}\n${seq}\n`).update(row.content).digest('hex');
      return { id: row.id, seq, prev_hash: prevHash, hash };
    });
    await knex.raw(
      `insert into decisions (${columns.join(', ')}, seq, prev_hash, hash)
       select ${columns.map((column) => `u.${column}`).join(', ')}, c.seq, c.prev_hash, c.hash
       from json_to_recordset(?::json) as c(id uuid, seq bigint, prev_hash text, hash text) join decisions_unchained u on u.id = c.id`,
      [JSON.stringify(chain)],
    );
    after = rows[rows.length - 1];
  }
  await knex.raw('insert into decision_chain_head (seq, hash) values (?, ?)', [seq, hash]);
  await assertSameCount(knex, 'decisions_unchained', 'decisions', seq);
  await knex.raw('drop table decisions_unchained');
};

/** @param {import('knex').Knex} knex */
exports.down = async function down(knex) {
  await knex.raw('alter table decisions rename to decisions_chained');
  const dryRun = await knex.schema.hasColumn('decisions_chained', 'dry_run');
  const columns = dryRun ? [...COLUMNS, 'dry_run'] : COLUMNS;
  for (const name of [...Object.keys(INDEXES), 'decisions_seq_index']) await knex.raw(`drop index ${name}`);
  await knex.raw('alter table decisions_chained rename constraint decisions_pkey to decisions_chained_pkey');
  await knex.raw(`
    create table decisions (
      id uuid primary key,
      time timestamptz not null,
      request_id text not null,
      subject text,
      user_id uuid,
      organization text,
      action text not null,
      resource jsonb not null,
      method text not null,
      path text not null,
      allow boolean not null,
      status smallint not null,
      reasons text[] not null default '{}',
      policy_revision text,
      eval_latency_us integer,
      input jsonb
    )`);
  for (const [name, indexed] of Object.entries(INDEXES)) await knex.raw(`create index ${name} on decisions ${indexed}`);
  if (dryRun) await knex.raw('alter table decisions add column dry_run boolean not null default false');
  await knex.raw(`insert into decisions (${columns.join(', ')}) select ${columns.join(', ')} from decisions_chained order by seq`);
  await assertSameCount(knex, 'decisions_chained', 'decisions');
  await knex.raw('drop table decisions_chained');
  await knex.raw('drop table decision_chain_head');
  await knex.raw('drop table decision_chain_anchor');
};

/** Refuses (rolling the migration back) unless `target` holds every row of `source`, and `expected` when given. */
async function assertSameCount(knex, source, target, expected) {
  const { rows } = await knex.raw(
    `select (select count(*) from ${source})::bigint as source, (select count(*) from ${target})::bigint as target`,
  );
  const counts = { source: Number(rows[0].source), target: Number(rows[0].target) };
  if (counts.source !== counts.target || (expected !== undefined && counts.target !== expected)) {
    throw new Error(
      `decision log copy incomplete: ${source} has ${counts.source} rows, ${target} ${counts.target}${expected !== undefined ? `, ${expected} chained` : ''}; nothing was dropped`,
    );
  }
}

function monthStart(date) {
  return new Date(Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), 1));
}

function addMonths(date, months) {
  return new Date(Date.UTC(date.getUTCFullYear(), date.getUTCMonth() + months, 1));
}

function partitionName(month) {
  return `decisions_y${month.getUTCFullYear()}m${String(month.getUTCMonth() + 1).padStart(2, '0')}`;
}
