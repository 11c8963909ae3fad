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
  await knex.raw(
    'create index policy_shadow_disagreements_revisions_index on policy_shadow_disagreements (shadow_revision, active_revision)',
  );
};

/** Refuses while there are disagreements: rolling back must never delete what a policy author may still need. */
exports.down = async function down(knex) {
  const { rows } = await knex.raw('select count(*)::bigint as n from policy_shadow_disagreements');
  const count = Number(rows[0].n);
  if (count > 0) {
    throw new Error(
      `refusing to roll back: policy_shadow_disagreements holds ${count} rows this would delete; export them first ` +
        `(psql "$(npx portcullis db url)" -c "\\copy policy_shadow_disagreements to 'shadow-disagreements.csv' csv header"), delete them, then roll back`,
    );
  }
  await knex.schema.dropTableIfExists('policy_shadow_disagreements');
};
