// A shadow policy's disagreements are readable without SQL: a gateway whose shadow policy stops
// honouring "*" records one per request of an organization admin, and both
// GET /admin/v1/policy/shadow/disagreements (newest first, cursor pages, 400 on bad parameters)
// and `portcullis policy disagreements` show them.
import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { requireBuild, runCli } from './support/cli-process';
import { seedDirectory } from './support/directory-fixtures';
import { startHarness, type Harness } from './support/gateway-harness';
import { copyShippedPolicies, scratchDir, withoutStar } from './support/policy-workspace';
import { waitFor } from './support/wait-for';

const ADMIN_TOKEN = 'test-admin-token-0123456789';

interface Disagreement {
  id: string;
  time: string;
  decision_id: string;
  subject: string;
  method: string;
  path: string;
  active: { revision: string; allow: boolean; status: number; reasons: string[] };
  shadow: { revision: string; allow: boolean; status: number; reasons: string[] };
}

let h: Harness;
let work: string;
/** The decisions of alice's requests, oldest first: each one a disagreement. */
let decisions: string[];

function admin(query: string, adminToken: string | null = ADMIN_TOKEN): Promise<Response> {
  return fetch(`${h.gateway.adminUrl}/admin/v1/policy/shadow/disagreements${query}`, {
    headers: adminToken ? { authorization: `Bearer ${adminToken}` } : {},
  });
}

beforeAll(async () => {
  work = await scratchDir('shadow');
  const candidate = await copyShippedPolicies(work, 'candidate');
  const organization = path.join(candidate, 'organization.rego');
  const text = await readFile(organization, 'utf8');
  expect(withoutStar(text)).not.toBe(text);
  await writeFile(organization, withoutStar(text));
  h = await startHarness({ policy: { source: process.env.PORTCULLIS_TEST_BUNDLE, shadow: { source: candidate } } });
  await seedDirectory(h.database.db);
  const alice = await h.tokens.sign('alice|sub');
  const bob = await h.tokens.sign('bob|sub');
  decisions = [];
  for (const pathname of ['/orgs/acme', '/orgs/acme/projects', '/orgs/acme/projects/api', '/orgs/acme/members', '/orgs/acme/teams']) {
    const res = await h.request(pathname, { token: alice });
    expect(res.status).toBe(200);
    decisions.push(res.headers.get('x-portcullis-decision')!);
    // bob's own roles grant what he reads: both policies agree, nothing is recorded.
    expect((await h.request('/orgs/acme', { token: bob })).status).toBe(200);
  }
  await waitFor(async () => ((await h.database.db('policy_shadow_disagreements').count({ n: '*' }))[0]!.n === '5' ? true : undefined), {
    timeoutMs: 5000,
    what: 'five disagreements',
  });
});

afterAll(async () => {
  await h?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

describe('GET /admin/v1/policy/shadow/disagreements', () => {
  it('lists disagreements newest first with both decisions, a page at a time by next_cursor', async () => {
    const seen: Disagreement[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const res = await admin(`?limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
      expect(res.status).toBe(200);
      const page = (await res.json()) as { disagreements: Disagreement[]; next_cursor: string | null };
      expect(page.disagreements.length).toBeLessThanOrEqual(2);
      seen.push(...page.disagreements);
      cursor = page.next_cursor;
      pages += 1;
    } while (cursor);
    expect(pages).toBe(3);
    expect(seen.map((row) => row.decision_id)).toEqual([...decisions].reverse());
    expect(seen[seen.length - 1]).toMatchObject({
      subject: 'alice|sub',
      method: 'GET',
      path: '/orgs/acme',
      active: { allow: true, status: 200, reasons: ["granted by permission '*' in organization 'acme'"] },
      shadow: {
        allow: false,
        status: 403,
        reasons: ["missing permission 'organization:read' in organization 'acme' (your roles there: organization-admin)"],
      },
    });
    const policy = (await (
      await fetch(`${h.gateway.adminUrl}/admin/v1/policy`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
    ).json()) as {
      revision: string;
      shadow: { revision: string };
    };
    for (const row of seen) expect([row.active.revision, row.shadow.revision]).toEqual([policy.revision, policy.shadow.revision]);
  });

  it.each([
    ['limit=0', /limit: must be a whole number from 1 to 1000/],
    ['limit=1001', /limit: must be a whole number from 1 to 1000/],
    ['limit=ten', /limit: must be a whole number from 1 to 1000/],
    ['limit=1&limit=2', /"limit" is given more than once/],
    ['order=asc', /unknown parameter "order"/],
    ['cursor=not-a-cursor', /cursor: is not a next_cursor this endpoint gave/],
    ['cursor=00000000-0000-4000-8000-000000000000', /cursor: is not a next_cursor this endpoint gave/],
  ])('answers %s with a 400 problem naming the parameter', async (query, detail) => {
    const res = await admin(`?${query}`);
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toBe('application/problem+json');
    expect(((await res.json()) as { detail: string }).detail).toMatch(detail);
  });

  it('answers 401 without the admin token', async () => {
    expect((await admin('', null)).status).toBe(401);
  });
});

describe('portcullis policy disagreements', () => {
  beforeAll(() => {
    requireBuild();
  });

  it('prints the newest as JSON, the same rows as the admin API, and says when older ones remain', async () => {
    const run = await runCli(['policy', 'disagreements', '--limit', '3', '--format', 'json'], { DATABASE_URL: h.database.url });
    expect(run.code).toBe(0);
    const rows = JSON.parse(run.stdout) as Disagreement[];
    const api = (await (await admin('?limit=3')).json()) as { disagreements: Disagreement[] };
    expect(rows).toEqual(api.disagreements);
    expect(rows.map((row) => row.decision_id)).toEqual(decisions.slice(-3).reverse());
    expect(run.stderr.trim()).toBe('3 shown; older ones remain: --limit N');
  });

  it('prints a table for people', async () => {
    const run = await runCli(['policy', 'disagreements'], { DATABASE_URL: h.database.url });
    expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
    const lines = run.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^TIME +DECISION +SUBJECT +REQUEST +ACTIVE +SHADOW +SHADOW REASON$/);
    expect(lines).toHaveLength(6);
    expect(lines[5]).toMatch(
      new RegExp(
        `^\\S+Z  ${decisions[0]}  alice\\|sub  GET /orgs/acme +allow 200  deny 403  missing permission 'organization:read' in organization 'acme'`,
      ),
    );
  });

  it('refuses a bad --limit or --format with a one-line reason', async () => {
    for (const args of [
      ['--limit', '0'],
      ['--format', 'csv'],
    ]) {
      const run = await runCli(['policy', 'disagreements', ...args], { DATABASE_URL: h.database.url });
      expect(run.code).not.toBe(0);
      expect(run.stderr.trim().split('\n')).toHaveLength(1);
    }
  });
});
