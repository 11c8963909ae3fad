// `decisions summary`: counts of real gateway decisions by action, status, subject,
// organization and policy revision (and reason code where records have one), as a table or
// JSON, within a window, with dry runs left out unless asked for.
import { prepareDecision } from '../src/audit/chain/decision-chain';
import { PgDecisionStore } from '../src/audit/chain/pg-decision-store';
import { syntheticDecision, TEST_CHAIN } from './support/audit-helpers';
import { requireBuild, runCli } from './support/cli-process';
import { seedDirectory } from './support/directory-fixtures';
import { startHarness, type Harness } from './support/gateway-harness';
import { createTestDatabase } from './support/test-database';
import { waitFor } from './support/wait-for';

const ADMIN_TOKEN = 'test-admin-token-0123456789';

let h: Harness;
let servingRevision: string;

const admin = (path: string, init: RequestInit = {}) =>
  fetch(`${h.gateway.adminUrl}/admin/v1${path}`, {
    ...init,
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json', ...init.headers },
  });

beforeAll(async () => {
  requireBuild();
  h = await startHarness();
  await seedDirectory(h.database.db);
  const [alice, bob, carol] = await Promise.all(['alice|sub', 'bob|sub', 'carol|sub'].map((sub) => h.tokens.sign(sub)));
  const send = async (path: string, token: string | undefined, method = 'GET') =>
    (await h.request(path, { method, ...(token ? { token } : {}) })).arrayBuffer();
  for (let round = 0; round < 3; round++) {
    await send('/orgs/acme', alice); // allow 200
    await send('/orgs/acme', bob, 'DELETE'); // deny 403
    await send('/orgs/acme', alice, 'DELETE'); // deny 409
  }
  await send('/orgs/globex', carol); // deny 403
  await send('/orgs/acme', undefined); // 401
  // Two dry runs: counted only when asked for.
  for (let n = 0; n < 2; n++) {
    const res = await admin('/evaluate', {
      method: 'POST',
      body: JSON.stringify({ subject: 'bob|sub', method: 'DELETE', path: '/orgs/acme' }),
    });
    expect(res.status).toBe(200);
  }
  await waitFor(
    async () => {
      const backlog = ((await (await admin('/audit')).json()) as { backlog: number }).backlog;
      return backlog === 0 && Number((await h.database.db('decisions').count({ n: '*' }).first())!.n) === 13;
    },
    { timeoutMs: 15_000, what: 'the decisions to be written' },
  );
  servingRevision = (await h.database
    .db<{ policy_revision: string }>('decisions')
    .whereNotNull('policy_revision')
    .first('policy_revision'))!.policy_revision;
  // Two days old: outside the default window of 24h.
  await new PgDecisionStore(h.database.db, TEST_CHAIN).append([
    prepareDecision(syntheticDecision(0, { time: new Date(Date.now() - 2 * 86_400_000), action: 'project:delete' })),
  ]);
});
afterAll(async () => h?.close());

const summary = (...args: string[]) => runCli(['decisions', 'summary', ...args], { DATABASE_URL: h.database.url });

interface Summary {
  by: string;
  since: string;
  until: string | null;
  total: { count: number; allowed: number; denied: number };
  groups: { key: string | number | null; count: number; allowed: number; denied: number }[];
}

async function json(...args: string[]): Promise<Summary> {
  const run = await summary('--format', 'json', ...args);
  expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
  return JSON.parse(run.stdout) as Summary;
}

describe('portcullis decisions summary', () => {
  it('prints counts by action as an aligned table, most frequent first, with allows and denials apart', async () => {
    const run = await summary('--since', '1h', '--by', 'action');
    expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
    expect(run.stdout).toBe(
      [
        'ACTION               DECISIONS  ALLOWED  DENIED',
        'organization:delete          6        0       6',
        'organization:read            5        3       2',
        'total                       11        3       8',
        '',
      ].join('\n'),
    );
  });

  it('counts by status, subject, organization and revision as JSON, leaving dry runs out', async () => {
    const byStatus = await json('--since', '1h', '--by', 'status');
    expect(byStatus.groups.map((g) => [g.key, g.count])).toEqual([
      [403, 4],
      [200, 3],
      [409, 3],
      [401, 1],
    ]);
    expect(byStatus.total).toEqual({ count: 11, allowed: 3, denied: 8 });
    expect((await json('--by', 'subject')).groups.map((g) => [g.key, g.count])).toEqual([
      ['alice|sub', 6],
      ['bob|sub', 3],
      ['carol|sub', 1],
      [null, 1],
    ]);
    expect((await json('--by', 'org')).groups.map((g) => [g.key, g.count])).toEqual([
      ['acme', 10],
      ['globex', 1],
    ]);
    expect((await json('--by', 'revision')).groups).toEqual([
      { key: servingRevision, count: 10, allowed: 3, denied: 7 },
      { key: null, count: 1, allowed: 0, denied: 1 },
    ]);
  });

  it('filters like query: outcome, person, window, and dry runs only with --dry-run true', async () => {
    expect((await json('--allow', 'false', '--by', 'status')).groups.map((g) => g.key)).toEqual([403, 409, 401]);
    expect((await json('--user', 'bob@example.com', '--by', 'action')).groups).toEqual([
      { key: 'organization:delete', count: 3, allowed: 0, denied: 3 },
    ]);
    expect((await json('--dry-run', 'true', '--by', 'subject')).groups).toEqual([{ key: 'bob|sub', count: 2, allowed: 0, denied: 2 }]);
    const week = await json('--since', '7d', '--by', 'action');
    expect(week.groups.find((g) => g.key === 'project:delete')).toMatchObject({ count: 1 });
    expect(week.since).toMatch(/^\d{4}-\d{2}-\d{2}T/);
  });

  it('counts by the reason code the policy recorded', async () => {
    const run = await summary('--by', 'code', '--allow', 'false');
    expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
    expect(run.stdout).toMatch(/^CODE\s+DECISIONS\s+ALLOWED\s+DENIED\n/);
    // The same counts as the stored codes of the denials that were served.
    const stored = await h.database
      .db<{ allow: boolean; dry_run: boolean; time: string; code: string | null }>('decisions')
      .where({ allow: false, dry_run: false })
      .where('time', '>', new Date(Date.now() - 86_400_000).toISOString())
      .select('code');
    const expected = new Map<string | null, number>();
    for (const { code } of stored) expected.set(code, (expected.get(code) ?? 0) + 1);
    expect(expected.size).toBeGreaterThan(1);
    const counted = (await json('--by', 'code', '--allow', 'false')).groups;
    expect(new Map(counted.map((g) => [g.key, g.count]))).toEqual(expected);
    expect(counted.every((g) => g.denied === g.count)).toBe(true);
  });

  it('exits 2 saying so when the records have no reason code column (a database not migrated yet)', async () => {
    const older = await createTestDatabase();
    try {
      await older.db.raw('alter table decisions drop column code');
      const run = await runCli(['decisions', 'summary', '--by', 'code'], { DATABASE_URL: older.url });
      expect(run.code).toBe(2);
      expect(run.stderr).toBe(
        'portcullis: --by code: the decision records have no reason code column yet (it comes with a newer migration); group by action, status, subject, org or revision instead\n',
      );
      expect((await runCli(['decisions', 'summary', '--by', 'action'], { DATABASE_URL: older.url })).code).toBe(0);
    } finally {
      await older.drop();
    }
  });

  it('refuses what it cannot group by', async () => {
    const run = await summary('--by', 'colour');
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/--by: must be one of code, action, subject, org, status, revision/);
  });
});
