// The directory the gateway reads (design §3.1): users, organizations, roles, members,
// teams, projects and invitations. Other services write these tables; the gateway only
// reads them, so the indexes below serve the subject and facts read models.

const BUILT_IN_ROLES = [
  { name: 'organization-admin', permissions: ['*'] },
  { name: 'default', permissions: ['organization:read', 'member:read', 'team:read', 'project:read'] },
];

/** @param {import('knex').Knex} knex */
exports.up = async function up(knex) {
  const uuidPk = (table) => table.uuid('id').primary().defaultTo(knex.raw('gen_random_uuid()'));
  const createdAt = (table) => table.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());

  await knex.schema.createTable('users', (table) => {
    uuidPk(table);
    table.text('subject').notNullable().unique();
    table.text('email');
    table.text('display_name');
    table.text('picture_url');
    createdAt(table);
    table.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });

  await knex.schema.createTable('organizations', (table) => {
    uuidPk(table);
    table.text('slug').notNullable().unique();
    table.text('name').notNullable();
    createdAt(table);
  });

  await knex.schema.createTable('roles', (table) => {
    uuidPk(table);
    table.uuid('organization_id').references('id').inTable('organizations').onDelete('CASCADE');
    table.text('name').notNullable();
    table.specificType('permissions', 'text[]').notNullable();
    table.unique(['organization_id', 'name']);
  });
  // NULLs are distinct in the unique constraint above, so built-in roles need their own.
  await knex.raw('create unique index roles_builtin_name_unique on roles (name) where organization_id is null');

  await knex.schema.createTable('organization_members', (table) => {
    table.uuid('organization_id').notNullable().references('id').inTable('organizations').onDelete('CASCADE');
    table.uuid('user_id').notNullable().references('id').inTable('users').onDelete('CASCADE');
    table.uuid('role_id').notNullable().references('id').inTable('roles');
    createdAt(table);
    table.primary(['organization_id', 'user_id']);
    table.index(['user_id']);
    table.index(['role_id']);
  });

  await knex.schema.createTable('teams', (table) => {
    uuidPk(table);
    // unique(organization_id, name) also serves lookups by organization.
    table.uuid('organization_id').notNullable().references('id').inTable('organizations').onDelete('CASCADE');
    table.text('name').notNullable();
    table.unique(['organization_id', 'name']);
  });

  await knex.schema.createTable('team_members', (table) => {
    table.uuid('team_id').notNullable().references('id').inTable('teams').onDelete('CASCADE');
    table.uuid('user_id').notNullable().references('id').inTable('users').onDelete('CASCADE');
    table.primary(['team_id', 'user_id']);
    table.index(['user_id']);
  });

  await knex.schema.createTable('team_roles', (table) => {
    table.uuid('team_id').notNullable().references('id').inTable('teams').onDelete('CASCADE');
    table.uuid('role_id').notNullable().references('id').inTable('roles').onDelete('CASCADE');
    table.primary(['team_id', 'role_id']);
    table.index(['role_id']);
  });

  await knex.schema.createTable('projects', (table) => {
    uuidPk(table);
    // RESTRICT enforces R5 in the database too; unique(organization_id, slug) serves lookups by organization.
    table.uuid('organization_id').notNullable().references('id').inTable('organizations').onDelete('RESTRICT');
    table.text('slug').notNullable();
    table.text('name');
    table.unique(['organization_id', 'slug']);
  });

  await knex.schema.createTable('invitations', (table) => {
    uuidPk(table);
    table.uuid('organization_id').notNullable().references('id').inTable('organizations').onDelete('CASCADE');
    table.text('email').notNullable();
    table.uuid('role_id').references('id').inTable('roles');
    table.timestamp('accepted_at', { useTz: true });
    createdAt(table);
    table.index(['organization_id']);
    table.index(['role_id']);
  });
  // Invitations are matched to a user's e-mail case-insensitively.
  await knex.raw('create index invitations_email_index on invitations (lower(email))');

  for (const role of BUILT_IN_ROLES) {
    await knex.raw(
      'insert into roles (organization_id, name, permissions) values (null, ?, ?::text[]) on conflict (name) where organization_id is null do nothing',
      [role.name, role.permissions],
    );
  }
};

/** Refuses while the directory holds anything but the built-in roles: other services' data is not ours to drop. */
exports.down = async function down(knex) {
  const { rows } = await knex.raw(`
    select (select count(*) from users) + (select count(*) from organizations) + (select count(*) from roles where organization_id is not null) as n`);
  const count = Number(rows[0].n);
  if (count > 0) {
    throw new Error(
      `refusing to roll back: the directory holds ${count} users, organizations and organization roles this would delete; ` +
        'dump it first (pg_dump --data-only -t users -t organizations -t roles -t organization_members -t teams -t team_members -t team_roles -t projects -t invitations), empty it, then roll back',
    );
  }
  for (const table of [
    'invitations',
    'projects',
    'team_roles',
    'team_members',
    'teams',
    'organization_members',
    'roles',
    'organizations',
    'users',
  ]) {
    await knex.schema.dropTableIfExists(table);
  }
};
