// R7 for every resource in the path (issue 10): a `credentials` registry, so that a
// credential addressed under another organization is not found. It names credentials and
// holds no secret material, ever: the credentials service keeps those. Slugs are lower-case
// by constraint, since path parameters keep their case: `/orgs/ACME` is simply not found.
// The registry notifies the gateways' caches like every directory table (migration ...020),
// in every session mode (ENABLE ALWAYS, as migration ...000002 does for the others).

const EVENTS = ['insert', 'update', 'delete', 'truncate'];

// The credential is a fact by slug (in its organization) or by id, as a project is. The
// caps match migration ...020's: past 100 keys, the notification asks for everything.
const keys = (query) => `array(${query} limit 101)`;
const notify = (rows) => `perform portcullis_directory_notify('credentials', tg_op,
      fact_orgs => ${keys(`select distinct o.slug from organizations o where o.id in (select c.organization_id from ${rows} c)`)},
      fact_ids => ${keys(`select distinct c.id::text from ${rows} c`)});`;

const NOTIFY_CREDENTIALS = `
create or replace function portcullis_notify_credentials() returns trigger language plpgsql as $$
begin
  if tg_op = 'INSERT' then
    ${notify('(select * from new_rows)')}
  elsif tg_op = 'DELETE' then
    ${notify('(select * from old_rows)')}
  else
    ${notify('(select * from old_rows union all select * from new_rows)')}
  end if;
  return null;
end $$`;

/** Rows breaking `column = lower(column)`, named so the operator can fix them. */
async function requireLowerCase(knex, table, column) {
  const { rows } = await knex.raw(
    `select id, ${column} as value from ${table} where ${column} <> lower(${column}) order by ${column} limit 10`,
  );
  if (rows.length > 0) {
    const found = rows.map((row) => `'${row.value}' (id ${row.id})`).join(', ');
    throw new Error(
      `${table}.${column} must be lower-case, but these are not: ${found}; lower-case them (update ${table} set ${column} = lower(${column}) where ...) and migrate again`,
    );
  }
}

/** @param {import('knex').Knex} knex */
exports.up = async function up(knex) {
  await requireLowerCase(knex, 'organizations', 'slug');
  await requireLowerCase(knex, 'projects', 'slug');
  await knex.raw('alter table organizations add constraint organizations_slug_lower_case check (slug = lower(slug))');
  await knex.raw('alter table projects add constraint projects_slug_lower_case check (slug = lower(slug))');

  await knex.schema.createTable('credentials', (table) => {
    table.uuid('id').primary().defaultTo(knex.raw('gen_random_uuid()'));
    // unique(organization_id, slug) also serves lookups by organization.
    table.uuid('organization_id').notNullable().references('id').inTable('organizations').onDelete('CASCADE');
    table.text('slug').notNullable();
    table.text('name');
    table.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    table.unique(['organization_id', 'slug']);
  });

  await knex.raw(NOTIFY_CREDENTIALS);
  const fn = 'portcullis_notify_credentials()';
  await knex.raw(
    `create trigger portcullis_notify_insert after insert on credentials referencing new table as new_rows for each statement execute function ${fn}`,
  );
  await knex.raw(
    `create trigger portcullis_notify_update after update on credentials referencing old table as old_rows new table as new_rows for each statement execute function ${fn}`,
  );
  await knex.raw(
    `create trigger portcullis_notify_delete after delete on credentials referencing old table as old_rows for each statement execute function ${fn}`,
  );
  await knex.raw(
    'create trigger portcullis_notify_truncate after truncate on credentials for each statement execute function portcullis_directory_truncated()',
  );
  for (const event of EVENTS) await knex.raw(`alter table credentials enable always trigger portcullis_notify_${event}`);
};

/** @param {import('knex').Knex} knex */
exports.down = async function down(knex) {
  const { rows } = await knex.raw('select count(*) as n from credentials');
  const count = Number(rows[0].n);
  if (count > 0) {
    throw new Error(
      `refusing to roll back: the credentials registry holds ${count} rows this would delete; dump it first (pg_dump --data-only -t credentials), empty it, then roll back`,
    );
  }
  await knex.schema.dropTable('credentials');
  await knex.raw('drop function if exists portcullis_notify_credentials()');
  await knex.raw('alter table projects drop constraint if exists projects_slug_lower_case');
  await knex.raw('alter table organizations drop constraint if exists organizations_slug_lower_case');
};
