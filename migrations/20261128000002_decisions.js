// The decision log (design §3.6): one row per decision, allow or deny, written in batches
// by the audit stage and only ever appended to. No foreign keys: records outlive the users,
// organizations and roles they mention.

/** @param {import('knex').Knex} knex */
exports.up = async function up(knex) {
  await knex.schema.createTable('decisions', (table) => {
    table.uuid('id').primary();
    table.timestamp('time', { useTz: true }).notNullable();
    table.text('request_id').notNullable();
    table.text('subject');
    table.uuid('user_id');
    table.text('organization');
    table.text('action').notNullable();
    table.jsonb('resource').notNullable();
    table.text('method').notNullable();
    table.text('path').notNullable();
    table.boolean('allow').notNullable();
    table.smallint('status').notNullable();
    table.specificType('reasons', 'text[]').notNullable().defaultTo('{}');
    table.text('policy_revision');
    table.integer('eval_latency_us');
    table.jsonb('input');
  });
  // Audit questions are "what happened recently", narrowed by who, where, what or outcome.
  await knex.raw('create index decisions_time_index on decisions (time)');
  await knex.raw('create index decisions_subject_time_index on decisions (subject, time)');
  await knex.raw('create index decisions_organization_time_index on decisions (organization, time)');
  await knex.raw('create index decisions_action_time_index on decisions (action, time)');
  await knex.raw('create index decisions_allow_time_index on decisions (allow, time)');
  await knex.raw('create index decisions_request_id_index on decisions (request_id)');
};

/** Refuses while the decision log holds records: an audit trail is never dropped by a rollback. */
exports.down = async function down(knex) {
  const { rows } = await knex.raw('select count(*)::bigint as n from decisions');
  const count = Number(rows[0].n);
  if (count > 0) {
    throw new Error(
      `refusing to roll back: the decision log holds ${count} records this would delete; export them first ` +
        `(npx portcullis decisions query --format ndjson --limit ${count} > decisions.ndjson, or pg_dump), empty the table, then roll back`,
    );
  }
  await knex.schema.dropTableIfExists('decisions');
};
