// Freshness without polling (issue 6): every write to a directory table, by any service,
// notifies the channel `portcullis_directory` at commit with what the gateways' caches must
// evict: the users whose subject changed, organizations whose every member changed, and the
// organizations and row ids whose resource facts changed. Triggers are per statement (with
// transition tables), so a bulk write sends one notification, not one per row. A change
// naming more than MAX_KEYS keys, or a payload near PostgreSQL's 8000-byte limit, asks for
// everything to be dropped instead: coarse but never stale.

const MAX_KEYS = 100;
const MAX_PAYLOAD_BYTES = 7900;

/**
 * For each table, the arguments of portcullis_directory_notify() computed from `rows`, a
 * relation holding the changed rows (old and new for an UPDATE). `keys(sql)` caps a list.
 */
const keys = (query) => `array(${query} limit ${MAX_KEYS + 1})`;
const TABLES = {
  users: (rows) => `
    subject_users => ${keys(`select distinct c.id::text from ${rows} c`)},
    subject_subs => ${keys(`select distinct c.subject from ${rows} c`)}`,
  organizations: (rows) => `
    subject_orgs => ${keys(`select distinct c.slug from ${rows} c`)},
    fact_orgs => ${keys(`select distinct c.slug from ${rows} c`)}`,
  // Members: the member's subject, and the `member` fact of requests addressing that user.
  organization_members: (rows) => `
    subject_users => ${keys(`select distinct c.user_id::text from ${rows} c`)},
    fact_ids => ${keys(`select distinct c.user_id::text from ${rows} c`)}`,
  // A team's name is in its members' subjects; the team is a fact by name (in its
  // organization) or by id.
  teams: (rows) => `
    subject_users => ${keys(`select distinct tm.user_id::text from team_members tm where tm.team_id in (select c.id from ${rows} c)`)},
    fact_orgs => ${keys(`select distinct o.slug from organizations o where o.id in (select c.organization_id from ${rows} c)`)},
    fact_ids => ${keys(`select distinct c.id::text from ${rows} c`)}`,
  team_members: (rows) => `
    subject_users => ${keys(`select distinct c.user_id::text from ${rows} c`)}`,
  team_roles: (rows) => `
    subject_users => ${keys(`select distinct tm.user_id::text from team_members tm where tm.team_id in (select c.team_id from ${rows} c)`)}`,
  // A role reaches a subject as a member's default role or through a team. Built-in roles
  // (organization_id null) exist in every organization, so their facts are everywhere.
  roles: (rows) => `
    subject_users => ${keys(`select distinct h.user_id::text from (
        select om.user_id from organization_members om where om.role_id in (select c.id from ${rows} c)
        union
        select tm.user_id from team_roles tr join team_members tm on tm.team_id = tr.team_id where tr.role_id in (select c.id from ${rows} c)
      ) h`)},
    fact_orgs => ${keys(`select distinct o.slug from organizations o where o.id in (select c.organization_id from ${rows} c)`)},
    fact_ids => ${keys(`select distinct c.id::text from ${rows} c`)},
    all_facts => exists(select 1 from ${rows} c where c.organization_id is null)`,
  projects: (rows) => `
    fact_orgs => ${keys(`select distinct o.slug from organizations o where o.id in (select c.organization_id from ${rows} c)`)},
    fact_ids => ${keys(`select distinct c.id::text from ${rows} c`)}`,
  invitations: (rows) => `
    fact_ids => ${keys(`select distinct c.id::text from ${rows} c`)}`,
};

const NOTIFY_FUNCTION = `
create or replace function portcullis_directory_notify(
  tbl text, op text,
  subject_users text[] default '{}', subject_subs text[] default '{}', subject_orgs text[] default '{}', all_subjects boolean default false,
  fact_orgs text[] default '{}', fact_ids text[] default '{}', all_facts boolean default false
) returns void language plpgsql as $$
declare
  payload text;
begin
  all_subjects := all_subjects or greatest(cardinality(subject_users), cardinality(subject_subs), cardinality(subject_orgs)) > ${MAX_KEYS};
  all_facts := all_facts or greatest(cardinality(fact_orgs), cardinality(fact_ids)) > ${MAX_KEYS};
  if not all_subjects and not all_facts
     and cardinality(subject_users) + cardinality(subject_subs) + cardinality(subject_orgs) + cardinality(fact_orgs) + cardinality(fact_ids) = 0 then
    return; -- nothing any cache holds can have changed (e.g. an UPDATE of no rows)
  end if;
  payload := json_build_object(
    'table', tbl, 'op', op,
    'subjects', case when all_subjects then json_build_object('all', true)
                     else json_build_object('users', subject_users, 'subs', subject_subs, 'orgs', subject_orgs) end,
    'facts', case when all_facts then json_build_object('all', true)
                  else json_build_object('orgs', fact_orgs, 'ids', fact_ids) end)::text;
  if octet_length(payload) > ${MAX_PAYLOAD_BYTES} then
    payload := json_build_object('table', tbl, 'op', op, 'subjects', json_build_object('all', true), 'facts', json_build_object('all', true))::text;
  end if;
  perform pg_notify('portcullis_directory', payload);
end $$`;

const TRUNCATE_FUNCTION = `
create or replace function portcullis_directory_truncated() returns trigger language plpgsql as $$
begin
  perform portcullis_directory_notify(tg_table_name::text, tg_op, all_subjects => true, all_facts => true);
  return null;
end $$`;

// One function per table; each trigger passes the transition tables its event has.
function tableFunction(table, args) {
  const call = (rows) => `perform portcullis_directory_notify('${table}', tg_op, ${args(rows)});`;
  return `
create or replace function portcullis_notify_${table}() returns trigger language plpgsql as $$
begin
  if tg_op = 'INSERT' then
    ${call('(select * from new_rows)')}
  elsif tg_op = 'DELETE' then
    ${call('(select * from old_rows)')}
  else
    ${call('(select * from old_rows union all select * from new_rows)')}
  end if;
  return null;
end $$`;
}

/** @param {import('knex').Knex} knex */
exports.up = async function up(knex) {
  await knex.raw(NOTIFY_FUNCTION);
  await knex.raw(TRUNCATE_FUNCTION);
  for (const [table, args] of Object.entries(TABLES)) {
    await knex.raw(tableFunction(table, args));
    const fn = `portcullis_notify_${table}()`;
    await knex.raw(
      `create trigger portcullis_notify_insert after insert on ${table} referencing new table as new_rows for each statement execute function ${fn}`,
    );
    await knex.raw(
      `create trigger portcullis_notify_update after update on ${table} referencing old table as old_rows new table as new_rows for each statement execute function ${fn}`,
    );
    await knex.raw(
      `create trigger portcullis_notify_delete after delete on ${table} referencing old table as old_rows for each statement execute function ${fn}`,
    );
    await knex.raw(
      `create trigger portcullis_notify_truncate after truncate on ${table} for each statement execute function portcullis_directory_truncated()`,
    );
  }
};

/** @param {import('knex').Knex} knex */
exports.down = async function down(knex) {
  for (const table of Object.keys(TABLES)) {
    for (const event of ['insert', 'update', 'delete', 'truncate'])
      await knex.raw(`drop trigger if exists portcullis_notify_${event} on ${table}`);
    await knex.raw(`drop function if exists portcullis_notify_${table}()`);
  }
  await knex.raw('drop function if exists portcullis_directory_truncated()');
  await knex.raw(
    'drop function if exists portcullis_directory_notify(text, text, text[], text[], text[], boolean, text[], text[], boolean)',
  );
};
