// The decision log keyed by what never changes:
// - `decision_ids` holds every stored record's id and seq. A partitioned table's keys must
//   include `time`, so only a table of its own makes the id alone unique: a replay of a record
//   under another time is skipped. Ids below the verification anchor are released when it moves
//   (retention moves it past records only once every record up to it is gone).
// - the per-filter indexes lead with the filter and end in `seq`, the order the admin API and
//   the CLI page in (they replace the (filter, time) ones).

const FILTERS = ['subject', 'organization', 'action', 'allow'];

/** @param {import('knex').Knex} knex */
exports.up = async function up(knex) {
  await knex.raw('create table decision_ids (id uuid primary key, seq bigint not null)');
  // A record already stored twice under two times keeps its first id; both rows stay chained.
  await knex.raw('insert into decision_ids (id, seq) select id, min(seq) from decisions group by id');
  await knex.raw('create index decision_ids_seq_index on decision_ids (seq)');
  await knex.raw(`
    create function decision_ids_release() returns trigger language plpgsql as $$
    begin
      delete from decision_ids where seq <= new.seq;
      return null;
    end $$`);
  await knex.raw(`
    create trigger decision_ids_release after update of seq on decision_chain_anchor
    for each row when (new.seq > old.seq) execute function decision_ids_release()`);
  for (const column of FILTERS) {
    await knex.raw(`drop index if exists decisions_${column}_time_index`);
    await knex.raw(`create index decisions_${column}_seq_index on decisions (${column}, seq)`);
  }
};

/** @param {import('knex').Knex} knex */
exports.down = async function down(knex) {
  // Nothing is lost: every id is still in `decisions`.
  for (const column of FILTERS) {
    await knex.raw(`drop index if exists decisions_${column}_seq_index`);
    await knex.raw(`create index decisions_${column}_time_index on decisions (${column}, time)`);
  }
  await knex.raw('drop trigger decision_ids_release on decision_chain_anchor');
  await knex.raw('drop function decision_ids_release()');
  await knex.raw('drop table decision_ids');
};
