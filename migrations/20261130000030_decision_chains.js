// One hash chain per gateway instance, so no append waits on another instance's lock:
// - `decisions.chain` names the chain a record belongs to (its writer's audit.instance_id) and
//   `chain_seq` its position there; the hash of a new record covers both. `seq` stays the log's
//   global order (pages, cursors, decision_ids), now drawn from the sequence `decision_seq`.
// - `decision_chain_head`, `decision_chain_anchor` and `decision_checkpoints` get a row (a run of
//   rows) per chain. Records written before this migration form the chain `legacy`, hashed as
//   they always were (position = seq), and it keeps verifying; it takes no new records.
// - `decision_ids` is released by retention itself (an anchor's position is no global seq).
// - the console's hourly counts get a row per hour *and chain*: two instances no longer wait on
//   one row lock; a known policy revision is no longer re-locked by every batch.
const { createHash } = require('node:crypto');

const LEGACY = 'legacy';
const GENESIS_HASH = '0'.repeat(64);
const RECHAIN_BATCH = 5000;

// The canonical content as src/audit/store/pg-decision-query-store.ts (CANONICAL_CONTENT_SQL) renders it.
const CANONICAL = `(jsonb_build_object(
    'id', id, 'path', path, 'time', to_char(time at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
    'allow', allow, 'input', input, 'action', action, 'method', method, 'status', status,
    'reasons', to_jsonb(reasons), 'subject', subject, 'user_id', user_id, 'resource', resource,
    'request_id', request_id, 'organization', organization, 'eval_latency_us', eval_latency_us,
    'policy_revision', policy_revision
  ) || case when dry_run then '{"dry_run": true}'::jsonb else '{}'::jsonb end
    || case when directory_version is null then '{}'::jsonb else jsonb_build_object('directory_version', directory_version) end
    || case when code is null then '{}'::jsonb else jsonb_build_object('code', code) end
    || case when code_params is null then '{}'::jsonb else jsonb_build_object('code_params', code_params) end)::text`;

const ROLLUP_BY_CHAIN = `
create or replace function decision_rollup() returns trigger language plpgsql as $$
begin
  insert into decision_hourly as h (hour, chain, allowed, denied, failed)
    select date_trunc('hour', time, 'UTC'), chain,
           count(*) filter (where allow),
           count(*) filter (where not allow and status < 500),
           count(*) filter (where not allow and status >= 500)
    from new_rows where not dry_run group by 1, 2
  on conflict (hour, chain) do update set allowed = h.allowed + excluded.allowed, denied = h.denied + excluded.denied, failed = h.failed + excluded.failed;
  -- ON CONFLICT DO UPDATE locks the row even when its WHERE is false: only earlier sightings get that far.
  insert into decision_revisions as r (policy_revision, first_seen)
    select n.policy_revision, min(n.time) from new_rows n
    where n.policy_revision is not null and not n.dry_run
      and not exists (select 1 from decision_revisions s where s.policy_revision = n.policy_revision and s.first_seen <= n.time)
    group by 1
  on conflict (policy_revision) do update set first_seen = excluded.first_seen where excluded.first_seen < r.first_seen;
  return null;
end $$`;

const ROLLUP_SHARED = `
create or replace function decision_rollup() returns trigger language plpgsql as $$
begin
  insert into decision_hourly as h (hour, allowed, denied, failed)
    select date_trunc('hour', time, 'UTC'),
           count(*) filter (where allow),
           count(*) filter (where not allow and status < 500),
           count(*) filter (where not allow and status >= 500)
    from new_rows where not dry_run group by 1
  on conflict (hour) do update set allowed = h.allowed + excluded.allowed, denied = h.denied + excluded.denied, failed = h.failed + excluded.failed;
  insert into decision_revisions as r (policy_revision, first_seen)
    select policy_revision, min(time) from new_rows where policy_revision is not null and not dry_run group by 1
  on conflict (policy_revision) do update set first_seen = excluded.first_seen where excluded.first_seen < r.first_seen;
  return null;
end $$`;

/** @param {import('knex').Knex} knex */
exports.up = async function up(knex) {
  const { rows: heads } = await knex.raw('select seq from decision_chain_head');
  const legacyHead = Number(heads[0]?.seq ?? 0);
  await knex.raw('create sequence decision_seq as bigint minvalue 1');
  if (legacyHead > 0) await knex.raw('select setval(?, ?)', ['decision_seq', legacyHead]);

  await knex.raw(`alter table decisions add column chain text not null default '${LEGACY}', add column chain_seq bigint`);
  await knex.raw('update decisions set chain_seq = seq');
  await knex.raw('alter table decisions alter column chain_seq set not null, alter column chain drop default');
  // Verification walks one chain in position order.
  await knex.raw('create index decisions_chain_index on decisions (chain, chain_seq)');

  for (const table of ['decision_chain_head', 'decision_chain_anchor']) {
    await knex.raw(`alter table ${table} add column chain text not null default '${LEGACY}'`);
    await knex.raw(`alter table ${table} drop column singleton`);
    await knex.raw(`alter table ${table} add primary key (chain)`);
    await knex.raw(`alter table ${table} alter column chain drop default`);
  }
  // A database that never recorded anything has no legacy chain to keep.
  if (legacyHead === 0) {
    await knex.raw('delete from decision_chain_head');
    await knex.raw('delete from decision_chain_anchor');
  }
  await knex.raw(`alter table decision_checkpoints add column chain text not null default '${LEGACY}'`);
  await knex.raw('alter table decision_checkpoints drop constraint decision_checkpoints_pkey');
  await knex.raw('alter table decision_checkpoints add primary key (chain, seq)');
  await knex.raw('alter table decision_checkpoints alter column chain drop default');

  await knex.raw('drop trigger decision_ids_release on decision_chain_anchor');
  await knex.raw('drop function decision_ids_release()');

  await knex.raw(`alter table decision_hourly add column chain text not null default '${LEGACY}'`);
  await knex.raw('alter table decision_hourly drop constraint decision_hourly_pkey');
  await knex.raw('alter table decision_hourly add primary key (hour, chain)');
  await knex.raw('alter table decision_hourly alter column chain drop default');
  await knex.raw(ROLLUP_BY_CHAIN);
};

/**
 * Joins every chain back into the one chain of before: the legacy records keep their seq and
 * hash, the others follow them in seq order, renumbered without gaps and hashed the old way.
 * Refuses while a chain other than `legacy` has a signed checkpoint or a moved anchor: those
 * signatures (and the records retention removed) cannot be carried into one chain.
 */
exports.down = async function down(knex) {
  const { rows: signed } = await knex.raw(
    `select (select count(*) from decision_checkpoints where chain <> ?)::bigint as checkpoints,
            (select count(*) from decision_chain_anchor where chain <> ? and seq > 0)::bigint as anchors`,
    [LEGACY, LEGACY],
  );
  const checkpoints = Number(signed[0].checkpoints);
  const anchors = Number(signed[0].anchors);
  if (checkpoints > 0 || anchors > 0) {
    throw new Error(
      `refusing to roll back: ${checkpoints} signed checkpoints and ${anchors} retention anchors of per-instance chains would be lost; export them first ` +
        `(psql "$(npx portcullis db url)" -c "\\copy decision_checkpoints to 'decision-checkpoints.csv' csv header", and decision_chain_anchor), ` +
        `delete the checkpoints of chains other than ${LEGACY}, and roll back only a decision log whose per-instance chains start at their first record`,
    );
  }
  const { rows: legacyRows } = await knex.raw('select seq, hash from decision_chain_head where chain = ?', [LEGACY]);
  let seq = Number(legacyRows[0]?.seq ?? 0);
  let hash = legacyRows[0]?.hash ?? GENESIS_HASH;
  let after = 0;
  for (;;) {
    const { rows } = await knex.raw(
      `select id, chain, seq as old_seq, ${CANONICAL} as content from decisions where chain <> ? and seq > ? order by seq limit ${RECHAIN_BATCH}`,
      [LEGACY, after],
    );
    if (rows.length === 0) break;
    const chained = rows.map((row) => {
      seq += 1;
      const prevHash = hash;
      hash = createHash('sha256').update(`${prevHash}\n${seq}\n`).update(row.content).digest('hex');
      return { id: row.id, old_seq: Number(row.old_seq), seq, prev_hash: prevHash, hash };
    });
    const batch = JSON.stringify(chained);
    await knex.raw(
      `update decisions d set seq = c.seq, prev_hash = c.prev_hash, hash = c.hash
       from json_to_recordset(?::json) as c(id uuid, old_seq bigint, seq bigint, prev_hash text, hash text)
       where d.id = c.id and d.seq = c.old_seq`,
      [batch],
    );
    await knex.raw(
      `update decision_ids i set seq = c.seq from json_to_recordset(?::json) as c(id uuid, old_seq bigint, seq bigint) where i.id = c.id and i.seq = c.old_seq`,
      [batch],
    );
    after = Number(rows[rows.length - 1].old_seq);
  }

  await knex.raw(ROLLUP_SHARED);
  await knex.raw('alter table decision_hourly drop constraint decision_hourly_pkey');
  await knex.raw(
    `create table decision_hourly_shared as select hour, sum(allowed)::bigint as allowed, sum(denied)::bigint as denied, sum(failed)::bigint as failed from decision_hourly group by hour`,
  );
  await knex.raw('delete from decision_hourly');
  await knex.raw('alter table decision_hourly drop column chain');
  await knex.raw(
    'insert into decision_hourly (hour, allowed, denied, failed) select hour, allowed, denied, failed from decision_hourly_shared',
  );
  await knex.raw('drop table decision_hourly_shared');
  await knex.raw('alter table decision_hourly add primary key (hour)');

  await knex.raw('delete from decision_checkpoints where chain <> ?', [LEGACY]);
  await knex.raw('alter table decision_checkpoints drop constraint decision_checkpoints_pkey');
  await knex.raw('alter table decision_checkpoints drop column chain');
  await knex.raw('alter table decision_checkpoints add primary key (seq)');

  const { rows: anchorRows } = await knex.raw('select * from decision_chain_anchor where chain = ?', [LEGACY]);
  const anchor = anchorRows[0];
  for (const table of ['decision_chain_head', 'decision_chain_anchor']) {
    await knex.raw(`delete from ${table}`);
    await knex.raw(`alter table ${table} drop column chain`);
    await knex.raw(`alter table ${table} add column singleton boolean primary key default true check (singleton)`);
  }
  await knex.raw('insert into decision_chain_head (seq, hash) values (?, ?)', [seq, hash]);
  if (anchor) {
    await knex.raw(
      'insert into decision_chain_anchor (seq, hash, pruned_before, moved_at, retention_days, key_id, signature) values (?, ?, ?, ?, ?, ?, ?)',
      [anchor.seq, anchor.hash, anchor.pruned_before, anchor.moved_at, anchor.retention_days, anchor.key_id, anchor.signature],
    );
  } else {
    await knex.raw('insert into decision_chain_anchor (seq, hash) values (0, ?)', [GENESIS_HASH]);
  }
  await knex.raw(`
    create function decision_ids_release() returns trigger language plpgsql as $$
    begin
      delete from decision_ids where seq <= new.seq;
      return null;
    end $$`);
  await knex.raw(`
    create trigger decision_ids_release after update of seq on decision_chain_anchor
    for each row when (new.seq > old.seq) execute function decision_ids_release()`);

  await knex.raw('drop index decisions_chain_index');
  await knex.raw('alter table decisions drop column chain, drop column chain_seq');
  await knex.raw('drop sequence decision_seq');
};
