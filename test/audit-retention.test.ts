// Years of records: monthly partitions made ahead, old months dropped whole by the retention
// job (by the records' time and by when PostgreSQL stored them), and the chain still verifying
// from where retention cut it, the anchor never jumping over a surviving record.
import type { Knex } from 'knex';
import { verifyChain } from '../src/audit/chain/decision-chain-verifier';
import { DecisionRetention, MAINTENANCE_LOCK } from '../src/audit/store/decision-retention';
import { PgDecisionPartitions } from '../src/audit/store/pg-decision-partitions';
import { PgDecisionQueryStore } from '../src/audit/store/pg-decision-query-store';
import { createDatabase } from '../src/db/database';
import { appendDecisions } from './support/audit-helpers';
import { createTestDatabase, type TestDatabase } from './support/test-database';

let database: TestDatabase;
let db: Knex;

beforeEach(async () => {
  database = await createTestDatabase();
  db = database.db;
});
afterEach(async () => database?.drop());

const months = async () => (await new PgDecisionPartitions(db).months()).map((month) => month.toISOString().slice(0, 7));
const retention = (retentionDays: number, errors: Error[] = []) =>
  new DecisionRetention(db, { retentionDays, onError: (error) => errors.push(error) });
const at = (iso: string) => () => ({ time: new Date(iso) });
const verify = () => verifyChain(new PgDecisionQueryStore(db));
/** As if every record so far had been stored at its own time (they were appended just now). */
const storedAtTheirTime = () => db('decisions').update({ recorded_at: db.ref('time') });

describe('decision log partitions', () => {
  it("moves each chain's anchor to its own newest record dropped, frees those ids, and every chain still verifies", async () => {
    await appendDecisions(db, 3, 0, at('2020-01-10T00:00:00Z'), 'gw-a');
    await appendDecisions(db, 2, 10, at('2020-01-11T00:00:00Z'), 'gw-b');
    await appendDecisions(db, 2, 20, at('2020-01-12T00:00:00Z'), 'gw-a');
    await appendDecisions(db, 4, 30, at('2020-03-10T00:00:00Z'), 'gw-b');
    await appendDecisions(db, 1, 40, at('2020-03-11T00:00:00Z'), 'gw-a');
    await storedAtTheirTime();
    const run = await retention(30).run(new Date('2020-03-20T00:00:00Z'));
    expect(run.dropped).toEqual([{ name: 'decisions_y2020m01', records: 7 }]);
    const anchors = await db<{ chain: string; seq: string }>('decision_chain_anchor').orderBy('chain').select('chain', 'seq');
    expect(anchors).toEqual([
      { chain: 'gw-a', seq: '5' },
      { chain: 'gw-b', seq: '2' },
    ]);
    // The ids of the dropped records are free again; the others are still claimed.
    expect(await db('decision_ids').count({ n: '*' })).toEqual([{ n: '5' }]);
    const result = await verify();
    expect(result).toMatchObject({ ok: true, checked: 5 });
    expect(result.chains.map((chain) => [chain.chain, chain.checked, chain.head.seq])).toEqual([
      ['gw-a', 1, 6],
      ['gw-b', 4, 6],
    ]);
  });

  it('creates the partitions of the current month and the next two, once', async () => {
    const first = await retention(36_500).run(new Date('2030-06-15T12:00:00Z'));
    expect(first).toEqual({ ran: true, created: ['2030-06', '2030-07', '2030-08'], dropped: [] });
    expect(await months()).toEqual(expect.arrayContaining(['2030-06', '2030-07', '2030-08']));
    expect((await retention(36_500).run(new Date('2030-06-20T12:00:00Z'))).created).toEqual([]);
  });

  it('keeps the partitioned table indexed by time, subject, organization, action and outcome in every partition', async () => {
    await retention(365).run(new Date('2030-06-15T12:00:00Z'));
    const { rows } = await db.raw<{ rows: { indexdef: string }[] }>(
      `select indexdef from pg_indexes where tablename = 'decisions_y2030m07'`,
    );
    const columns = rows.map((row) => row.indexdef.replace(/^.* USING btree /, ''));
    expect(columns).toEqual(
      expect.arrayContaining([
        '(id, "time")',
        '("time")',
        '(subject, seq)',
        '(organization, seq)',
        '(action, seq)',
        '(allow, seq)',
        '(seq)',
      ]),
    );
  });

  it('drops whole months older than the retention, keeps the month straddling the cutoff, and the chain still verifies', async () => {
    await appendDecisions(db, 5, 0, at('2020-01-10T00:00:00Z'));
    const february = await appendDecisions(db, 5, 5, at('2020-02-10T00:00:00Z'));
    await appendDecisions(db, 5, 10, at('2020-03-10T00:00:00Z'));
    await storedAtTheirTime();
    const run = await retention(30).run(new Date('2020-03-20T00:00:00Z'));
    // The cutoff is 2020-02-19: January ended before it; February did not, so all of it stays.
    expect(run.dropped).toEqual([{ name: 'decisions_y2020m01', records: 5 }]);
    expect(await months()).not.toContain('2020-01');
    expect(await db('decisions').count({ n: '*' })).toEqual([{ n: '10' }]);
    expect(
      await db('decisions')
        .whereIn(
          'id',
          february.map((record) => record.id),
        )
        .count({ n: '*' }),
    ).toEqual([{ n: '5' }]);

    const anchor = await db<{ seq: string; pruned_before: Date | null; moved_at: Date | null; retention_days: number | null }>(
      'decision_chain_anchor',
    ).first('seq', 'pruned_before', 'moved_at', 'retention_days');
    expect(anchor).toEqual({
      seq: '5',
      pruned_before: new Date('2020-02-01T00:00:00Z'),
      moved_at: new Date('2020-03-20T00:00:00Z'),
      retention_days: 30,
    });
    expect(await verify()).toMatchObject({ ok: true, checked: 10 });
  });

  it('keeps a late write into an old month until every record before it goes too: the anchor never jumps over a surviving record', async () => {
    await appendDecisions(db, 1, 0, at('2020-03-01T00:00:00Z')); // seq 1
    await appendDecisions(db, 1, 1, at('2020-01-31T23:59:59Z')); // seq 2, a late write into an old month
    await appendDecisions(db, 2, 2, at('2020-03-02T00:00:00Z')); // seq 3 and 4
    await storedAtTheirTime();
    // January is old enough, but seq 1 in March is not: dropping January would cut the chain at seq 2.
    expect((await retention(30).run(new Date('2020-03-20T00:00:00Z'))).dropped).toEqual([]);
    expect(await db('decision_chain_anchor').first('seq')).toEqual({ seq: '0' });
    expect(await verify()).toMatchObject({ ok: true, checked: 4 });

    // Once March is old enough too, both go together and the anchor moves past all four.
    const run = await retention(30).run(new Date('2020-05-01T00:00:00Z'));
    expect(run.dropped.map((partition) => partition.name).sort()).toEqual(['decisions_y2020m01', 'decisions_y2020m03']);
    expect(await db('decision_chain_anchor').first('seq')).toEqual({ seq: '4' });
    expect(await verify()).toMatchObject({ ok: true, checked: 0 });
  });

  it('never drops a record on the time a writer chose: an old time stored recently (clock reset, late spool) is kept for the retention', async () => {
    await appendDecisions(db, 2, 0, at('2020-03-05T00:00:00Z'));
    await storedAtTheirTime();
    // Stored now (2026) with a time in 2019: its partition is old by time, not by storage.
    const late = await appendDecisions(db, 1, 2, at('2019-12-31T12:00:00Z'));
    expect(await months()).toContain('2019-12');
    const run = await retention(30).run(new Date());
    // March 2020 really was stored then and goes; the record after it in the chain stays.
    expect(run.dropped).toEqual([{ name: 'decisions_y2020m03', records: 2 }]);
    expect(await db('decisions').where({ id: late[0]!.id }).count({ n: '*' })).toEqual([{ n: '1' }]);
    expect(await db('decision_chain_anchor').first('seq')).toEqual({ seq: '2' });
    expect(await verify()).toMatchObject({ ok: true, checked: 1 });

    // Retention days after it was stored, it goes.
    const later = await retention(30).run(new Date(Date.now() + 31 * 86_400_000));
    expect(later.dropped).toContainEqual({ name: 'decisions_y2019m12', records: 1 });
    expect(await db('decision_chain_anchor').first('seq')).toEqual({ seq: '3' });
  });

  it('skips a round while another instance does the upkeep', async () => {
    const other = createDatabase({ url: database.url });
    try {
      await other.transaction(async (trx) => {
        await trx.raw('select pg_advisory_xact_lock(?)', [MAINTENANCE_LOCK]);
        expect(await retention(30).run(new Date('2030-06-15T00:00:00Z'))).toEqual({ ran: false, created: [], dropped: [] });
      });
    } finally {
      await other.destroy();
    }
    expect((await retention(30).run(new Date('2030-06-15T00:00:00Z'))).ran).toBe(true);
  });

  it('runs once as it starts', async () => {
    await db.raw(`drop table decisions_y${new Date().getUTCFullYear()}m${String(new Date().getUTCMonth() + 1).padStart(2, '0')}`);
    const errors: Error[] = [];
    const job = retention(30, errors);
    await job.start();
    const now = new Date();
    expect(await months()).toContain(now.toISOString().slice(0, 7));
    await job.stop();
    expect(errors).toEqual([]);
  });
});
