// The directory notification triggers (migration ...020) fire in every session mode: a write
// applied with `session_replication_role = replica` (logical replication, `pg_restore
// --disable-triggers`) changes what the gateways' caches hold just as much as any other.

const TABLES = [
  'users',
  'organizations',
  'organization_members',
  'teams',
  'team_members',
  'team_roles',
  'roles',
  'projects',
  'invitations',
];
const EVENTS = ['insert', 'update', 'delete', 'truncate'];

/** @param {import('knex').Knex} knex */
exports.up = async function up(knex) {
  for (const table of TABLES) {
    for (const event of EVENTS) await knex.raw(`alter table ${table} enable always trigger portcullis_notify_${event}`);
  }
};

/** @param {import('knex').Knex} knex */
exports.down = async function down(knex) {
  for (const table of TABLES) {
    for (const event of EVENTS) await knex.raw(`alter table ${table} enable trigger portcullis_notify_${event}`);
  }
};
