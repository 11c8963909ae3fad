// What the operator console's overview reads without scanning the decision log:
// - `decision_hourly`: served decisions (dry runs excluded) counted per UTC hour as allowed,
//   denied (a policy or request refusal, status < 500) and failed (status >= 500: the gateway
//   failed closed), kept up to date by a statement trigger on `decisions` that adds each
//   inserted batch in one upsert per hour. Retention drops records, never these counts.
// - `decision_revisions`: when each policy revision first decided a request, the reload marks
//   on the overview's chart.
// - the decisions page's filters on revision and user lead with the filter and end in `seq`
//   (the page order), like the subject, organization, action and outcome ones.

const ROLLUP = `
create function decision_rollup() returns trigger language plpgsql as $$
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
  await knex.raw(`
    create table decision_hourly (
      hour timestamptz primary key,
      allowed bigint not null default 0,
      denied bigint not null default 0,
      failed bigint not null default 0
    )`);
  await knex.raw('create table decision_revisions (policy_revision text primary key, first_seen timestamptz not null)');
  await knex.raw('create index decision_revisions_first_seen_index on decision_revisions (first_seen)');
  await knex.raw('create index decisions_policy_revision_seq_index on decisions (policy_revision, seq)');
  await knex.raw('create index decisions_user_id_seq_index on decisions (user_id, seq)');
  await knex.raw(ROLLUP);
  // Under the decision log's own lock order: a batch committed between the backfill and the
  // trigger would be counted by neither.
  await knex.raw('lock table decisions in share row exclusive mode');
  await knex.raw(`
    insert into decision_hourly (hour, allowed, denied, failed)
    select date_trunc('hour', time, 'UTC'), count(*) filter (where allow), count(*) filter (where not allow and status < 500), count(*) filter (where not allow and status >= 500)
    from decisions where not dry_run group by 1`);
  await knex.raw(`
    insert into decision_revisions (policy_revision, first_seen)
    select policy_revision, min(time) from decisions where policy_revision is not null and not dry_run group by 1`);
  await knex.raw(
    'create trigger decision_rollup after insert on decisions referencing new table as new_rows for each statement execute function decision_rollup()',
  );
};

/** @param {import('knex').Knex} knex */
exports.down = async function down(knex) {
  await knex.raw('drop trigger decision_rollup on decisions');
  await knex.raw('drop function decision_rollup()');
  await knex.raw('drop table decision_revisions');
  await knex.raw('drop table decision_hourly');
  await knex.raw('drop index decisions_user_id_seq_index');
  await knex.raw('drop index decisions_policy_revision_seq_index');
};
