// Requests on which the shadow policy (`policy.shadow`) and the active policy disagreed:
// both revisions and decisions, and the input both judged, so a case can be replayed. Like
// the decision log, no foreign keys: rows outlive what they mention.

/** @param {import('knex').Knex} knex */
exports.up = async function up(knex) {
  await knex.schema.createTable('policy_shadow_disagreements', (table) => {
    table.uuid('id').primary();
    table.timestamp('time', { useTz: true }).notNullable();
    table.uuid('decision_id').notNullable();
    table.text('request_id').notNullable();
    table.text('subject');
    table.text('organization');
    table.text('action').notNullable();
    table.text('method').notNullable();
    table.text('path').notNullable();
    table.text('active_revision').notNullable();
    table.boolean('active_allow').notNullable();
    table.smallint('active_status').notNullable();
    table.specificType('active_reasons', 'text[]').notNullable();
    table.text('shadow_revision').notNullable();
    table.boolean('shadow_allow').notNullable();
    table.smallint('shadow_status').notNullable();
    table.specificType('shadow_reasons', 'text[]').notNullable();
    table.jsonb('input');
  });
  await knex.raw('create index policy_shadow_disagreements_time_index on policy_shadow_disagreements (time)');
  await knex.raw('create index policy_shadow_disagreements_revisions_index on policy_shadow_disagreements (shadow_revision, active_revision)');
};

/** @param {import('knex').Knex} knex */
exports.down = async function down(knex) {
  await knex.schema.dropTableIfExists('policy_shadow_disagreements');
};
