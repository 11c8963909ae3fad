// Tamper evidence, as an auditor checks it: `portcullis decisions verify` over a real chain,
// then the same chain edited, re-hashed, cut and reordered with SQL behind the gateway's back.
import type { Knex } from 'knex';
import { CANONICAL_CONTENT_SQL } from '../src/audit/store/pg-decision-query-store';
import type { DecisionRecord } from '../src/audit/decision-record';
import { appendDecisions, TEST_CHAIN } from './support/audit-helpers';
import { requireBuild, runCli } from './support/cli-process';
import { createTestDatabase, type TestDatabase } from './support/test-database';

let database: TestDatabase;
let db: Knex;
let records: DecisionRecord[];
const COUNT = 300;

beforeAll(async () => {
  requireBuild();
  database = await createTestDatabase();
  db = database.db;
  records = await appendDecisions(db, COUNT);
});
afterAll(async () => database?.drop());

const verify = (...args: string[]) => runCli(['decisions', 'verify', ...args], { DATABASE_URL: database.url });
/** A stored record as the tampering below reads and restores it. */
interface StoredRow {
  id: string;
  seq: number;
  allow: boolean;
  path: string;
  reasons: string[];
  resource: unknown;
  input: unknown;
  hash: string;
  [column: string]: unknown;
}
const rowAt = async (seq: number): Promise<StoredRow> => (await db<StoredRow>('decisions').where({ seq }).first())!;

/** Runs `tamper`, then `restore`, whatever happens in between. */
async function tampered<T>(tamper: () => Promise<unknown>, restore: () => Promise<unknown>, check: () => Promise<T>): Promise<T> {
  await tamper();
  try {
    return await check();
  } finally {
    await restore();
  }
}

describe('portcullis decisions verify', () => {
  it('exits 0 and says how many records it checked when the chain is intact', async () => {
    const run = await verify();
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(
      new RegExp(
        `^chain ${TEST_CHAIN}: ${COUNT} records intact \\(head: seq ${COUNT}, hash [0-9a-f]{64}\\)\nverified ${COUNT} decision records in [\\d.]+ s: the chain is intact\n$`,
      ),
    );
  });

  it('exits 1 naming the record whose content was edited with SQL', async () => {
    const victim = await rowAt(123);
    const run = await tampered(
      () => db('decisions').where({ seq: 123 }).update({ allow: !victim.allow }),
      () => db('decisions').where({ seq: 123 }).update({ allow: victim.allow }),
      () => verify(),
    );
    expect(run.code).toBe(1);
    expect(run.stdout).toBe('');
    expect(run.stderr.trim().split('\n')).toHaveLength(1);
    expect(run.stderr).toContain(`decision ${victim.id} (seq 123): content edited`);
    expect(run.stderr).toContain('122 records before it verified');
    expect((await verify()).code).toBe(0);
  });

  it('names the next record when an edited record was re-hashed to hide the edit', async () => {
    const victim = await rowAt(200);
    const next = await rowAt(201);
    const run = await tampered(
      async () => {
        await db('decisions')
          .where({ seq: 200 })
          .update({ reasons: ['forged'] });
        // The record's own hash recomputed over the forged content, as the chain would have it.
        await db.raw(
          `update decisions set hash = encode(sha256(convert_to(prev_hash || E'\\n' || chain || E'\\n' || chain_seq || E'\\n' || ${CANONICAL_CONTENT_SQL}, 'UTF8')), 'hex') where seq = 200`,
        );
        expect((await rowAt(200)).hash).not.toBe(victim.hash);
      },
      () => db('decisions').where({ seq: 200 }).update({ reasons: victim.reasons, hash: victim.hash }),
      () => verify(),
    );
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(`decision ${next.id} (seq 201): previous hash mismatch`);
  });

  it('detects a deleted record as a gap in seq at the record after it', async () => {
    const victim = await rowAt(150);
    const next = await rowAt(151);
    const run = await tampered(
      () => db('decisions').where({ seq: 150 }).delete(),
      () => db('decisions').insert({ ...victim, resource: JSON.stringify(victim.resource), input: JSON.stringify(victim.input) }),
      () => verify(),
    );
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(`decision ${next.id} (seq 151): gap in seq: seq 150 is missing`);
  });

  it('detects the newest records being deleted', async () => {
    const newest = await db<StoredRow>('decisions')
      .where('seq', '>', COUNT - 2)
      .orderBy('seq');
    const run = await tampered(
      () =>
        db('decisions')
          .where('seq', '>', COUNT - 2)
          .delete(),
      () =>
        db('decisions').insert(newest.map((row) => ({ ...row, resource: JSON.stringify(row.resource), input: JSON.stringify(row.input) }))),
      () => verify(),
    );
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(`(seq ${COUNT - 1}): the newest records are missing: seq ${COUNT - 1} to ${COUNT} are gone`);
  });

  it('detects two records whose places in the chain were swapped', async () => {
    const [first, second] = [await rowAt(50), await rowAt(51)];
    const run = await tampered(
      async () => {
        await db('decisions').where({ id: first.id }).update({ seq: -1 });
        await db('decisions').where({ id: second.id }).update({ seq: 50 });
        await db('decisions').where({ id: first.id }).update({ seq: 51 });
      },
      async () => {
        await db('decisions').where({ id: first.id }).update({ seq: 50 });
        await db('decisions').where({ id: second.id }).update({ seq: 51 });
      },
      () => verify(),
    );
    expect(run.code).toBe(1);
    // The chain still holds link by link; the log's order (seq) no longer grows along it.
    expect(run.stderr).toContain(
      `decision ${second.id} (seq 51): its place in the log (seq 50 of the log) is not after that of the record before it (51)`,
    );
    expect((await verify()).code).toBe(0);
  });

  it('with --since starts at the first record at or after that time and trusts its prev_hash', async () => {
    const victim = await rowAt(10);
    const from = records[99]!.time.toISOString();
    const run = await tampered(
      () => db('decisions').where({ seq: 10 }).update({ path: '/elsewhere' }),
      () => db('decisions').where({ seq: 10 }).update({ path: victim.path }),
      async () => ({ since: await verify('--since', from), all: await verify() }),
    );
    expect(run.since.code).toBe(0);
    expect(run.since.stdout).toMatch(new RegExp(`^verified ${COUNT - 99} decision records`, 'm'));
    expect(run.all.code).toBe(1);
    expect(run.all.stderr).toContain(`(seq 10): content edited`);
  });

  it('exits 2, not 1, when it could not check: a --since that is not a time, an unknown option, the database away', async () => {
    const badSince = await verify('--since', 'yesterday');
    expect(badSince.code).toBe(2);
    expect(badSince.stderr).toMatch(/--since: "yesterday" is neither an ISO-8601 time nor a duration/);
    const unknown = await verify('--sinse', '1h');
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown option '--sinse'/);
    // A port nothing listens on.
    const away = await runCli(['decisions', 'verify'], { DATABASE_URL: 'postgres://portcullis:portcullis@127.0.0.1:1/portcullis' });
    expect(away.code).toBe(2);
    expect(away.stderr).toMatch(/^portcullis: .*ECONNREFUSED/m);
  });
});
