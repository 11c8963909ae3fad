// Dry runs (`POST /admin/v1/evaluate`, `portcullis explain`) are recorded like any decision,
// but marked, so audit queries can tell what was only asked from what was served.

/** @param {import('knex').Knex} knex */
exports.up = async function up(knex) {
  await knex.schema.alterTable('decisions', (table) => {
    table.boolean('dry_run').notNullable().defaultTo(false);
  });
};

/**
 * Refuses while a record is a dry run: `dry_run` is part of that record's hash, so dropping the
 * column would make `decisions verify` fail, and the mark would be lost.
 */
exports.down = async function down(knex) {
  const { rows } = await knex.raw('select count(*)::bigint as n from decisions where dry_run');
  const count = Number(rows[0].n);
  if (count > 0) {
    throw new Error(
      `refusing to roll back: ${count} decision records are dry runs, and dry_run is part of their hash (verify would fail after dropping it); ` +
        'export the decision log first (npx portcullis decisions query --format ndjson --limit <all records> > decisions.ndjson, or pg_dump), ' +
        'then roll back only on a database whose decision log may be emptied',
    );
  }
  await knex.schema.alterTable('decisions', (table) => {
    table.dropColumn('dry_run');
  });
};
