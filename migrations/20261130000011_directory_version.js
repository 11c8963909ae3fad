// Which state of the directory did a decision see? `directory_version` is a counter that every
// statement changing a directory table bumps inside its own transaction, so a new version
// becomes visible exactly when its change does. The gateway's read models read it in the same
// snapshot as the subject and the facts, and each decision record stores the version its
// inputs were read at (`decisions.directory_version`).
//
// The bump goes where every directory table's statement trigger already goes once:
// portcullis_directory_notify() (migrations ...020 and the credentials registry), which this
// migration wraps. One row means directory writers serialize from their first write to their
// commit, so versions commit in order and "version N" names one state; a transaction that
// needs row locks (SELECT ... FOR UPDATE) should take them before its first write.

const NOTIFY_ARGS = 'text, text, text[], text[], text[], boolean, text[], text[], boolean';

// Same signature and defaults as the wrapped function: the triggers call it with named arguments.
const VERSIONED_NOTIFY = `
create function portcullis_directory_notify(
  tbl text, op text,
  subject_users text[] default '{}', subject_subs text[] default '{}', subject_orgs text[] default '{}', all_subjects boolean default false,
  fact_orgs text[] default '{}', fact_ids text[] default '{}', all_facts boolean default false
) returns void language plpgsql as $$
begin
  -- No keys and no "all": the statement changed no row (an UPDATE matching nothing).
  if all_subjects or all_facts
     or cardinality(subject_users) + cardinality(subject_subs) + cardinality(subject_orgs) + cardinality(fact_orgs) + cardinality(fact_ids) > 0 then
    update directory_version set version = version + 1;
  end if;
  perform portcullis_directory_send_notification(tbl, op, subject_users, subject_subs, subject_orgs, all_subjects, fact_orgs, fact_ids, all_facts);
end $$`;

/** @param {import('knex').Knex} knex */
exports.up = async function up(knex) {
  await knex.raw(`create table directory_version (
    id boolean primary key default true check (id),
    version bigint not null
  )`);
  await knex.raw('insert into directory_version (version) values (0)');
  await knex.raw(`alter function portcullis_directory_notify(${NOTIFY_ARGS}) rename to portcullis_directory_send_notification`);
  await knex.raw(VERSIONED_NOTIFY);
  await knex.schema.alterTable('decisions', (table) => {
    table.bigInteger('directory_version').nullable();
  });
};

/**
 * Refuses while a record carries a directory version: it is part of that record's hash, so
 * dropping the column would make `decisions verify` fail.
 */
exports.down = async function down(knex) {
  const { rows } = await knex.raw('select count(*)::bigint as n from decisions where directory_version is not null');
  const count = Number(rows[0].n);
  if (count > 0) {
    throw new Error(
      `refusing to roll back: ${count} decision records carry a directory_version, which is part of their hash (verify would fail after dropping it); ` +
        'export the decision log first (npx portcullis decisions query --format ndjson --limit <all records> > decisions.ndjson, or pg_dump), ' +
        'then roll back only on a database whose decision log may be emptied',
    );
  }
  await knex.schema.alterTable('decisions', (table) => {
    table.dropColumn('directory_version');
  });
  await knex.raw(`drop function portcullis_directory_notify(${NOTIFY_ARGS})`);
  await knex.raw(`alter function portcullis_directory_send_notification(${NOTIFY_ARGS}) rename to portcullis_directory_notify`);
  await knex.raw('drop table directory_version');
};
