// An organization's role cannot take a built-in role's name: a policy that tests
// `"organization-admin" in roles` must mean the built-in role, never a look-alike an
// organization created. A check constraint holds in every session mode (triggers do not
// fire under `session_replication_role = replica`); names are compared case-insensitively
// so a look-alike cannot fool a person reading a role list either.

const RESERVED = ['organization-admin', 'default'];
const CONSTRAINT = 'roles_builtin_names_reserved';

/** @param {import('knex').Knex} knex */
exports.up = async function up(knex) {
  const { rows } = await knex.raw(
    `select r.id, r.name, o.slug from roles r join organizations o on o.id = r.organization_id
     where lower(r.name) = any(?::text[]) order by o.slug, r.name`,
    [RESERVED],
  );
  if (rows.length > 0) {
    const found = rows.map((row) => `'${row.name}' of ${row.slug} (id ${row.id})`).join(', ');
    throw new Error(
      `organization roles use a built-in role's name (${RESERVED.join(', ')}): ${found}; rename them (update roles set name = '...' where id = '...') and migrate again`,
    );
  }
  // DDL takes no bind parameters; the names are the constants above.
  const names = RESERVED.map((name) => `'${name}'`).join(', ');
  await knex.raw(`alter table roles add constraint ${CONSTRAINT} check (organization_id is null or lower(name) not in (${names}))`);
};

/** @param {import('knex').Knex} knex */
exports.down = async function down(knex) {
  await knex.raw(`alter table roles drop constraint if exists ${CONSTRAINT}`);
};
