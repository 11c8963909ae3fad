// `directory_version` (issue 12): every statement that changes the directory bumps one counter
// in its own transaction; each decision records the version its subject and facts were read at
// (cached ones keep theirs), so an auditor can tell which state of the directory it saw. The
// version is hashed only when present: records from before it keep verifying.
import type { Knex } from 'knex';
import { prepareDecision } from '../src/audit/chain/decision-chain';
import { verifyChain } from '../src/audit/chain/decision-chain-verifier';
import { PgDecisionQueryStore } from '../src/audit/store/pg-decision-query-store';
import { createDatabase, migrationConfig } from '../src/db/database';
import { directoryVersionOf } from '../src/directory/directory-version';
import { PgFactsLoader } from '../src/directory/pg-facts-loader';
import { PgSubjectLoader } from '../src/directory/pg-subject-loader';
import { appendDecisions, syntheticDecision } from './support/audit-helpers';
import { seedDirectory, type Directory } from './support/directory-fixtures';
import { startHarness, type Harness } from './support/gateway-harness';
import { createTestDatabase, type TestDatabase } from './support/test-database';
import { waitFor } from './support/wait-for';

let database: TestDatabase;
let db: Knex;
let dir: Directory;

beforeAll(async () => {
  database = await createTestDatabase();
  db = database.db;
  dir = await seedDirectory(db);
});
afterAll(async () => database?.drop());

/** bigint: node-postgres reads it as a string. */
type VersionRow = { version: string };
const version = async (from: Knex | Knex.Transaction = db) =>
  Number((await from<VersionRow>('directory_version').first('version'))!.version);

describe('directory_version', () => {
  it('is bumped once by each statement that changes directory rows, and not by one that changes none', async () => {
    const before = await version();
    await db('users').insert([
      { subject: 'v1|sub', email: 'v1@example.com' },
      { subject: 'v2|sub', email: 'v2@example.com' },
    ]);
    expect(await version()).toBe(before + 1);
    await db('users').whereIn('subject', ['v1|sub', 'v2|sub']).update({ display_name: 'V' });
    expect(await version()).toBe(before + 2);
    await db('users').where({ subject: 'nobody|sub' }).update({ display_name: 'V' });
    await db('projects').where({ slug: 'no-such-project' }).delete();
    expect(await version()).toBe(before + 2);
    await db('credentials').where({ id: dir.credentials.acmeKey }).update({ name: 'renamed' });
    expect(await version()).toBe(before + 3);
  });

  it('becomes visible with its change at commit, and is undone with it by a rollback', async () => {
    const before = await version();
    const other = createDatabase({ url: database.url });
    try {
      const trx = await db.transaction();
      await trx('projects').insert({ organization_id: dir.orgs.globex, slug: 'draft', name: 'Draft' });
      expect(await version(trx)).toBe(before + 1);
      expect(await version(other)).toBe(before);
      await trx.rollback();
      expect(await version()).toBe(before);

      await db.transaction(async (committed) => {
        await committed('projects').insert({ organization_id: dir.orgs.globex, slug: 'kept', name: 'Kept' });
      });
      expect(await version(other)).toBe(before + 1);
      await db('projects').where({ slug: 'kept' }).delete();
    } finally {
      await other.destroy();
    }
  });

  it('is bumped by writes replicated or restored with triggers "disabled" (session_replication_role = replica)', async () => {
    const before = await version();
    await db.transaction(async (trx) => {
      await trx.raw('set local session_replication_role = replica');
      await trx('teams').where({ id: dir.teams.builders }).update({ name: 'builders' });
    });
    expect(await version()).toBe(before + 1);
  });

  it('is read by the subject and facts read models in the same snapshot, also for a subject with no users row', async () => {
    const current = await version();
    const subjects = new PgSubjectLoader(db);
    const facts = new PgFactsLoader(db);
    expect(directoryVersionOf(await subjects.load('alice|sub'))).toBe(current);
    expect(directoryVersionOf(await subjects.load('stranger|sub'))).toBe(current);
    expect(directoryVersionOf(await facts.load({ type: 'project', org: 'acme', project: 'api' }, 'project:read'))).toBe(current);
    // No facts, no query: nothing to say about the version.
    expect(directoryVersionOf(await facts.load({ type: 'profile' }, 'profile:read'))).toBeNull();
    // The version stays out of the policy input.
    expect(Object.keys(await facts.load({ type: 'organization', org: 'acme' }, 'organization:read'))).toEqual(['organization']);
    expect(JSON.stringify(await subjects.load('alice|sub'))).not.toContain('version');
  });
});

describe('directory_version on decision records', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({}, { database });
  });
  afterAll(async () => h?.close());

  /** The decision id the gateway answered with, once its record is in PostgreSQL. */
  async function recordedVersion(res: Response): Promise<number | null> {
    await res.arrayBuffer();
    const id = res.headers.get('x-portcullis-decision')!;
    const row = await waitFor(
      async () => db('decisions').where({ id }).first<{ directory_version: string | null } | undefined>('directory_version'),
      { timeoutMs: 15_000, what: `decision ${id}` },
    );
    return row.directory_version === null ? null : Number(row.directory_version);
  }

  it('records the version the decision saw: a decision after a directory write carries a higher one', async () => {
    const alice = await h.tokens.sign('alice|sub');
    const response = await h.request('/orgs/acme/projects/api', { token: alice });
    const first = await recordedVersion(response);
    expect(first).toBe(await version());
    // What an auditor reads back (GET /admin/v1/decisions/{id}, `decisions show`).
    expect((await new PgDecisionQueryStore(db).get(response.headers.get('x-portcullis-decision')!))?.directory_version).toBe(first);

    // A write that concerns alice: her cached subject is evicted, the next decision sees the new state.
    await db('team_members').insert({ team_id: dir.teams.builders, user_id: dir.users.alice });
    const written = await version();
    expect(written).toBeGreaterThan(first!);
    const later = await waitFor(
      async () => {
        const seen = await recordedVersion(await h.request('/orgs/acme/projects/api', { token: alice }));
        return seen !== null && seen >= written ? seen : undefined;
      },
      { timeoutMs: 15_000, what: 'a decision that saw the write' },
    );
    expect(later).toBe(written);
  });

  it('keeps the version a cached subject and cached facts were read at', async () => {
    const bob = await h.tokens.sign('bob|sub');
    const seen = await recordedVersion(await h.request('/orgs/acme', { token: bob }));
    // A write elsewhere (globex's projects) changes neither bob's subject nor acme's facts.
    await db('projects').insert({ organization_id: dir.orgs.globex, slug: 'elsewhere', name: 'Elsewhere' });
    expect(await version()).toBeGreaterThan(seen!);
    expect(await recordedVersion(await h.request('/orgs/acme', { token: bob }))).toBe(seen);
  });

  it('records no version for a request refused before the directory was read (401)', async () => {
    expect(await recordedVersion(await h.request('/orgs/acme'))).toBeNull();
  });
});

const THIS_MIGRATION = '20261130000011_directory_version.js';
const completed = async (from: Knex) =>
  ((await from.migrate.list(migrationConfig())) as [{ name: string }[], unknown[]])[0].map((migration) => migration.name);

/** Rolls back the migrations after this one, then this one. */
async function rollBackThisMigration(from: Knex): Promise<void> {
  while ((await completed(from)).includes(THIS_MIGRATION)) await from.migrate.down(migrationConfig());
}

describe('directory_version in the hash chain', () => {
  let chain: TestDatabase;
  beforeEach(async () => {
    chain = await createTestDatabase();
  });
  afterEach(async () => chain?.drop());

  it('hashes the version only when a record has one, so records from before it keep verifying', () => {
    const old = syntheticDecision(1);
    expect(prepareDecision(old).content).not.toContain('directory_version');
    expect(prepareDecision({ ...old, directoryVersion: null }).content).toBe(prepareDecision(old).content);
    expect(prepareDecision({ ...old, directoryVersion: 42 }).content).toMatch(/, "directory_version": 42}$/);
  });

  it('verifies a chain mixing records without and with a version, and detects an edited or added version', async () => {
    await appendDecisions(chain.db, 3);
    await appendDecisions(chain.db, 3, 3, (n) => ({ directoryVersion: 100 + n }));
    const query = new PgDecisionQueryStore(chain.db);
    expect(await verifyChain(query)).toMatchObject({ ok: true, checked: 6 });
    expect((await chain.db('decisions').orderBy('seq').pluck('directory_version')).map((v) => (v === null ? null : Number(v)))).toEqual([
      null,
      null,
      null,
      103,
      104,
      105,
    ]);

    await chain.db('decisions').where({ seq: 5 }).update({ directory_version: 1 });
    expect(await verifyChain(query)).toMatchObject({ ok: false, broken: { seq: 5 } });
    await chain.db('decisions').where({ seq: 5 }).update({ directory_version: 104 });
    await chain.db('decisions').where({ seq: 2 }).update({ directory_version: 7 });
    expect(await verifyChain(query)).toMatchObject({ ok: false, broken: { seq: 2 } });
    await chain.db('decisions').where({ seq: 2 }).update({ directory_version: null });
    expect(await verifyChain(query)).toMatchObject({ ok: true, checked: 6 });
  });

  it('refuses to roll back while a record carries a version, which is part of its hash', async () => {
    await appendDecisions(chain.db, 1, 0, () => ({ directoryVersion: 9 }));
    await expect(rollBackThisMigration(chain.db)).rejects.toThrow(/refusing to roll back: 1 decision records carry a directory_version/);
    expect(await completed(chain.db)).toContain(THIS_MIGRATION);
    expect(await chain.db('directory_version').first('version')).toBeDefined();
  });

  it('rolls back to the plain notification function when no record carries a version, and migrates up again', async () => {
    await rollBackThisMigration(chain.db);
    const { rows } = await chain.db.raw<{ rows: { proname: string }[] }>(
      `select proname from pg_proc where proname like 'portcullis_directory_%' order by proname`,
    );
    expect(rows.map((row) => row.proname)).toEqual(['portcullis_directory_notify', 'portcullis_directory_truncated']);
    await chain.db('users').insert({ subject: 'after-rollback|sub' });
    await chain.db.migrate.latest(migrationConfig());
    await chain.db('users').where({ subject: 'after-rollback|sub' }).delete();
    expect(Number((await chain.db<VersionRow>('directory_version').first('version'))!.version)).toBe(1);
  });
});
