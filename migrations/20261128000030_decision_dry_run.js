// Dry runs (`POST /admin/v1/evaluate`, `portcullis explain`) are recorded like any decision,
// but marked, so audit queries can tell what was only asked from what was served.

/** @param {import('knex').Knex} knex */
exports.up = async function up(knex) {
  await knex.schema.alterTable('decisions', (table) => {
    table.boolean('dry_run').notNullable().defaultTo(false);
  });
};

/** @param {import('knex').Knex} knex */
exports.down = async function down(knex) {
  await knex.schema.alterTable('decisions', (table) => {
    table.dropColumn('dry_run');
  });
};
