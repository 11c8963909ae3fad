// Rewriting the past is detected, and retention never trusts a writer's clock:
// - `decision_checkpoints`: the chain head (seq, hash) signed by the gateway with an Ed25519
//   key that is not in the database, every audit.checkpoint_interval_s, each naming the one
//   before it;
// - `decision_chain_anchor` records the retention run that moved it (when, with which
//   retention_days) and its signature;
// - `decisions.recorded_at`: when PostgreSQL stored the record. Retention drops a month only
//   when its records were also *stored* longer ago than the retention. Rows stored before this
//   migration have none (null counts as their `time`), so adding it rewrites nothing.

/** @param {import('knex').Knex} knex */
exports.up = async function up(knex) {
  await knex.raw('alter table decisions add column recorded_at timestamptz');
  await knex.raw('alter table decisions alter column recorded_at set default now()');
  await knex.raw(`
    alter table decision_chain_anchor
      add column moved_at timestamptz,
      add column retention_days integer,
      add column key_id text,
      add column signature text`);
  await knex.raw(`
    create table decision_checkpoints (
      seq bigint primary key,
      hash text not null,
      signed_at timestamptz not null,
      -- The checkpoint before this one (null for the first): a deleted checkpoint leaves a gap.
      prev_seq bigint,
      key_id text not null,
      signature text not null
    )`);
};

/** @param {import('knex').Knex} knex */
exports.down = async function down(knex) {
  // The signatures are the only proof the chain was not rewritten: never dropped silently.
  const { rows } = await knex.raw(
    `select (select count(*) from decision_checkpoints) as checkpoints, (select count(*) from decision_chain_anchor where signature is not null) as anchors`,
  );
  const checkpoints = Number(rows[0].checkpoints);
  const signedAnchor = Number(rows[0].anchors) > 0;
  if (checkpoints > 0 || signedAnchor) {
    throw new Error(
      `refusing to roll back: ${checkpoints} signed checkpoints${signedAnchor ? ' and the signed retention anchor' : ''} would be deleted; export them first ` +
        `(psql "$(npx portcullis db url)" -c "\\copy decision_checkpoints to 'decision-checkpoints.csv' csv header", and the decision_chain_anchor row), ` +
        `delete the checkpoints and clear the anchor's signature, then roll back`,
    );
  }
  await knex.raw('drop table decision_checkpoints');
  await knex.raw(
    'alter table decision_chain_anchor drop column moved_at, drop column retention_days, drop column key_id, drop column signature',
  );
  await knex.raw('alter table decisions drop column recorded_at');
};
