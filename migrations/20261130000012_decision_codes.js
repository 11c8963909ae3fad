// Reasons that can be counted: each decision record stores the outcome's stable `code`
// (`missing_permission`, `granted`, the gateway's `unauthenticated`, ...) and its `code_params`,
// beside the human `reasons`. Both are null when the policy set no code (and in records written
// before this migration); they join the hashed content only when not null, so those keep verifying.

/** @param {import('knex').Knex} knex */
exports.up = async function up(knex) {
  await knex.schema.alterTable('decisions', (table) => {
    table.text('code').nullable();
    table.jsonb('code_params').nullable();
  });
  // "Denials by reason in the last hour", `decisions query --code`: narrowed by code, newest first.
  await knex.raw('create index decisions_code_seq_index on decisions (code, seq)');
};

/**
 * Refuses while a record carries a code: it is part of that record's hash, so dropping the
 * columns would make `decisions verify` fail.
 */
exports.down = async function down(knex) {
  const { rows } = await knex.raw('select count(*)::bigint as n from decisions where code is not null or code_params is not null');
  const count = Number(rows[0].n);
  if (count > 0) {
    throw new Error(
      `refusing to roll back: ${count} decision records carry a code, which is part of their hash (verify would fail after dropping it); ` +
        'export the decision log first (npx portcullis decisions query --format ndjson --limit <all records> > decisions.ndjson, or pg_dump), ' +
        'then roll back only on a database whose decision log may be emptied',
    );
  }
  await knex.raw('drop index decisions_code_seq_index');
  await knex.schema.alterTable('decisions', (table) => {
    table.dropColumn('code_params');
    table.dropColumn('code');
  });
};
