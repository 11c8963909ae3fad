// The directory service (issue 12) writes the directory: users gain a verified-e-mail flag
// and a stored picture, invitations gain expiry, revocation and who invited/accepted, every
// write is recorded in `directory_events`, and `idempotency_keys` replays retried POSTs.
// user_pictures is not a notified table: the gateways' caches never hold picture bytes.

/** @param {import('knex').Knex} knex */
exports.up = async function up(knex) {
  await knex.schema.alterTable('users', (table) => {
    table.boolean('email_verified').notNullable().defaultTo(false);
  });

  await knex.schema.createTable('user_pictures', (table) => {
    table.uuid('user_id').primary().references('id').inTable('users').onDelete('CASCADE');
    table.text('content_type').notNullable();
    table.binary('data').notNullable();
    table.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });

  await knex.schema.alterTable('invitations', (table) => {
    table.timestamp('expires_at', { useTz: true }).notNullable().defaultTo(knex.raw("now() + interval '7 days'"));
    table.timestamp('revoked_at', { useTz: true });
    table.uuid('invited_by').references('id').inTable('users').onDelete('SET NULL');
    table.uuid('accepted_by').references('id').inTable('users').onDelete('SET NULL');
  });

  // No foreign key to organizations: the record of a change outlives what it changed.
  await knex.schema.createTable('directory_events', (table) => {
    table.bigIncrements('id').primary();
    table.timestamp('time', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    table.uuid('actor');
    table.text('action').notNullable();
    table.uuid('organization_id');
    table.text('organization_slug');
    table.text('target_type').notNullable();
    table.text('target_id');
    table.jsonb('before');
    table.jsonb('after');
    table.text('request_id');
    table.uuid('decision_id');
  });
  await knex.raw('create index directory_events_organization_index on directory_events (organization_id, id desc)');

  await knex.schema.createTable('idempotency_keys', (table) => {
    table.text('actor').notNullable();
    table.text('key').notNullable();
    table.text('method');
    table.text('path');
    table.text('body_hash');
    table.integer('status');
    table.jsonb('headers');
    table.jsonb('body');
    table.timestamp('created_at', { useTz: true }).defaultTo(knex.fn.now());
    table.primary(['actor', 'key']);
  });
};

/**
 * Refuses while a rollback would lose what nothing else holds: the change record, uploaded
 * pictures, and revocations (dropping revoked_at would make a revoked invitation pending
 * again). email_verified is re-read from the identity provider at the next registration, and
 * stored idempotency answers are a 24-hour cache: both are dropped.
 */
exports.down = async function down(knex) {
  const { rows } = await knex.raw(`
    select (select count(*) from directory_events) as events,
           (select count(*) from user_pictures) as pictures,
           (select count(*) from invitations where revoked_at is not null) as "revoked invitations"`);
  const found = Object.entries(rows[0])
    .filter(([, n]) => Number(n) > 0)
    .map(([what, n]) => `${n} ${what}`);
  if (found.length > 0) {
    throw new Error(
      `refusing to roll back: the directory service's data would be lost (${found.join(', ')}); ` +
        'export it first (npx portcullis directory events; pg_dump --data-only -t directory_events -t user_pictures -t invitations), ' +
        'empty directory_events and user_pictures, delete the revoked invitations, then roll back',
    );
  }
  await knex.schema.dropTable('idempotency_keys');
  await knex.schema.dropTable('directory_events');
  await knex.schema.alterTable('invitations', (table) => {
    table.dropColumn('accepted_by');
    table.dropColumn('invited_by');
    table.dropColumn('revoked_at');
    table.dropColumn('expires_at');
  });
  await knex.schema.dropTable('user_pictures');
  await knex.schema.alterTable('users', (table) => {
    table.dropColumn('email_verified');
  });
};
