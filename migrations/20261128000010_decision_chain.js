// The decision log for years of records: `decisions` becomes range-partitioned by month on
// `time` (retention drops whole partitions), and every record joins a SHA-256 hash chain
// (`seq`, `prev_hash`, `hash`) whose head lives in `decision_chain_head`. Records already
// written are chained here, in (time, id) order, exactly as src/audit/decision-chain.ts would.
const { createHash } = require('node:crypto');

const GENESIS_HASH = '0'.repeat(64);
// 19 columns a row: well under PostgreSQL's 65,535 bind parameters per statement.
const COPY_BATCH = 2000;
const INDEXES = {
  decisions_time_index: '(time)',
  decisions_subject_time_index: '(subject, time)',
  decisions_organization_time_index: '(organization, time)',
  decisions_action_time_index: '(action, time)',
  decisions_allow_time_index: '(allow, time)',
  decisions_request_id_index: '(request_id)',
};
const COLUMNS = ['id', 'time', 'request_id', 'subject', 'user_id', 'organization', 'action', 'resource', 'method', 'path', 'allow', 'status', 'reasons', 'policy_revision', 'eval_latency_us', 'input'];

/** @param {import('knex').Knex} knex */
exports.up = async function up(knex) {
  await knex.raw('alter table decisions rename to decisions_unchained');
  await knex.raw('alter table decisions_unchained rename constraint decisions_pkey to decisions_unchained_pkey');
  for (const name of Object.keys(INDEXES)) await knex.raw(`drop index ${name}`);

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
  for (const [name, columns] of Object.entries(INDEXES)) await knex.raw(`create index ${name} on decisions ${columns}`);
  await knex.raw('create index decisions_seq_index on decisions (seq)');

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
    await knex.raw(`create table if not exists ${partitionName(month)} partition of decisions for values from ('${month.toISOString()}') to ('${next.toISOString()}')`);
  }

  let seq = 0;
  let hash = GENESIS_HASH;
  let after = null;
  for (;;) {
    const query = knex('decisions_unchained').select(COLUMNS).orderBy([{ column: 'time' }, { column: 'id' }]).limit(COPY_BATCH);
    if (after) query.whereRaw('(time, id) > (?, ?)', [after.time, after.id]);
    const rows = await query;
    if (rows.length === 0) break;
    const chained = rows.map((row) => {
      seq += 1;
      const prevHash = hash;
      hash = createHash('sha256').update(`${prevHash}\n${seq}\n`).update(canonicalJson(contentOfRow(row))).digest('hex');
      return { ...row, resource: JSON.stringify(row.resource), input: row.input === null ? null : JSON.stringify(row.input), seq, prev_hash: prevHash, hash };
    });
    await knex('decisions').insert(chained);
    after = rows[rows.length - 1];
  }
  await knex.raw('insert into decision_chain_head (seq, hash) values (?, ?)', [seq, hash]);
  await knex.raw('drop table decisions_unchained');
};

/** @param {import('knex').Knex} knex */
exports.down = async function down(knex) {
  await knex.raw('alter table decisions rename to decisions_chained');
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
  for (const [name, columns] of Object.entries(INDEXES)) await knex.raw(`create index ${name} on decisions ${columns}`);
  await knex.raw(`insert into decisions (${COLUMNS.join(', ')}) select ${COLUMNS.join(', ')} from decisions_chained order by seq`);
  await knex.raw('drop table decisions_chained');
  await knex.raw('drop table decision_chain_head');
  await knex.raw('drop table decision_chain_anchor');
};

function monthStart(date) {
  return new Date(Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), 1));
}

function addMonths(date, months) {
  return new Date(Date.UTC(date.getUTCFullYear(), date.getUTCMonth() + months, 1));
}

function partitionName(month) {
  return `decisions_y${month.getUTCFullYear()}m${String(month.getUTCMonth() + 1).padStart(2, '0')}`;
}

// A frozen copy of the canonical form in src/audit/decision-chain.ts (migrations never import
// application code); test/audit-migration.test.ts checks that both agree.
function contentOfRow(row) {
  return {
    id: row.id,
    time: row.time.toISOString(),
    request_id: row.request_id,
    subject: row.subject,
    user_id: row.user_id,
    organization: row.organization,
    action: row.action,
    resource: row.resource,
    method: row.method,
    path: row.path,
    allow: row.allow,
    status: row.status,
    reasons: row.reasons,
    policy_revision: row.policy_revision,
    eval_latency_us: row.eval_latency_us,
    input: row.input === undefined ? null : row.input,
  };
}

function storable(text) {
  if (!/[\u0000\ud800-\udfff]/.test(text)) return text;
  return text.toWellFormed().replace(/\u0000/g, '\ufffd');
}

function canonicalJson(value) {
  const text = write(value);
  return text === undefined ? 'null' : text;
}

function write(value) {
  switch (typeof value) {
    case 'string':
      return JSON.stringify(storable(value));
    case 'number':
      return Number.isFinite(value) ? JSON.stringify(value) : 'null';
    case 'boolean':
      return value ? 'true' : 'false';
    case 'bigint':
      return value.toString();
    case 'object': {
      if (value === null) return 'null';
      if (typeof value.toJSON === 'function') return write(value.toJSON());
      if (Array.isArray(value)) return `[${value.map((item) => write(item) ?? 'null').join(',')}]`;
      const members = [];
      for (const key of Object.keys(value).sort()) {
        const item = write(value[key]);
        if (item !== undefined) members.push(`${JSON.stringify(storable(key))}:${item}`);
      }
      return `{${members.join(',')}}`;
    }
    default:
      return undefined;
  }
}
