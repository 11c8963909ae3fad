// Each decision record's policy input is stored as its canonical text (`input_text`), the text
// the record's hash covers, instead of jsonb (`input`): PostgreSQL then stores it without parsing
// it, which was about a quarter of its CPU per record, on the cores the gateway shares with it
// (BENCHMARKS.md, sixteenth round). Records written before keep `input` (and no `input_text`);
// readers take `input_text` parsed when there is one and `input` otherwise (the same value either
// way, INPUT_SQL), and verification puts the text in its place in the rendered record as it is
// (CANONICAL_CONTENT_SQL), so both kinds keep verifying. A gateway not yet upgraded still writes
// `input`, which reads and verifies as before; a `decisions verify` not yet upgraded cannot
// render the new records and reports them as edited.

/** @param {import('knex').Knex} knex */
exports.up = async function up(knex) {
  await knex.raw('alter table decisions add column input_text text');
};

/** Moves the inputs written as text back into `input` (the whole log is rewritten where it has any). */
exports.down = async function down(knex) {
  await knex.raw('update decisions set input = input_text::jsonb where input_text is not null');
  await knex.raw('alter table decisions drop column input_text');
};
