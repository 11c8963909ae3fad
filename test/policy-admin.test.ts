// The policy admin API and the explanations policy authors get, against a running gateway
// whose policy is a directory and whose shadow policy is a variant of it: GET /policy,
// reload, dry-run evaluate (recorded, never forwarded), `portcullis explain`, 403 details
// naming the missing permission, and shadow disagreements recorded and counted.
import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { expect } from '@jest/globals';
import type { Explanation } from '../src/authz/policy-explainer';
import { requireBuild, runExplain } from './support/cli-process';
import { seedDirectory, type Directory } from './support/directory-fixtures';
import { startHarness, type Harness } from './support/gateway-harness';
import { copyShippedPolicies, scratchDir, withoutStar } from './support/policy-workspace';
import type { Inserted } from './support/rows';
import { waitFor } from './support/wait-for';

const ADMIN_TOKEN = 'test-admin-token-0123456789';

let h: Harness;
let dir: Directory;
let work: string;
let active: string;
let shadow: string;
const token = (name: string) => h.tokens.sign(`${name}|sub`);
const forwardedCount = () => Object.values(h.upstreams).reduce((sum, upstream) => sum + upstream.received.length, 0);

function admin(pathname: string, init: RequestInit & { adminToken?: string | null } = {}): Promise<Response> {
  const { adminToken = ADMIN_TOKEN, ...rest } = init;
  const headers = new Headers(rest.headers);
  if (adminToken !== null) headers.set('authorization', `Bearer ${adminToken}`);
  if (rest.body) headers.set('content-type', 'application/json');
  return fetch(`${h.gateway.adminUrl}/admin/v1${pathname}`, { ...rest, headers });
}

async function json<T = Record<string, unknown>>(res: Response): Promise<T> {
  return (await res.json()) as T;
}

beforeAll(async () => {
  work = await scratchDir('policy-admin');
  active = await copyShippedPolicies(work, 'active');
  shadow = await copyShippedPolicies(work, 'candidate');
  const organization = path.join(shadow, 'organization.rego');
  const candidate = withoutStar(await readFile(organization, 'utf8'));
  expect(candidate).not.toBe(await readFile(organization, 'utf8'));
  await writeFile(organization, candidate);
  h = await startHarness({ policy: { source: active, shadow: { source: shadow } } });
  dir = await seedDirectory(h.database.db);
  // acme's own role that grants organization:* through a team, and one in globex that must not count (R3).
  const db = h.database.db;
  const [owners] = (await db('roles')
    .insert({ organization_id: dir.orgs.acme, name: 'owners', permissions: ['organization:*', 'member:read'] })
    .returning('id')) as Inserted;
  const [leads] = (await db('teams').insert({ organization_id: dir.orgs.acme, name: 'leads' }).returning('id')) as Inserted;
  await db('team_roles').insert({ team_id: leads.id, role_id: owners.id });
  await db('roles').insert({ organization_id: dir.orgs.globex, name: 'deleters', permissions: ['organization:delete'] });
});

afterAll(async () => {
  await h?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

describe('admin token', () => {
  it.each([
    ['missing', null],
    ['wrong', 'test-admin-token-0123456788'],
    ['a prefix of the right one', ADMIN_TOKEN.slice(0, -1)],
  ])('answers 401 to every policy endpoint when the token is %s', async (_case, adminToken) => {
    for (const [method, pathname] of [
      ['GET', '/policy'],
      ['POST', '/policy/reload'],
      ['POST', '/evaluate'],
    ] as const) {
      const res = await admin(pathname, { method, adminToken, ...(method === 'POST' ? { body: '{}' } : {}) });
      expect(res.status).toBe(401);
      expect(res.headers.get('content-type')).toBe('application/problem+json');
    }
  });
});

describe('GET /admin/v1/policy', () => {
  it('shows the revision, source, load time, entrypoints, last error and the shadow policy', async () => {
    const res = await admin('/policy');
    expect(res.status).toBe(200);
    const body = await json(res);
    expect(body).toEqual({
      revision: expect.stringMatching(/^sha256:[0-9a-f]{16}$/),
      source: active,
      source_kind: 'directory',
      loaded_at: expect.any(String),
      entrypoints: ['portcullis/decision'],
      last_error: null,
      shadow: {
        revision: expect.stringMatching(/^sha256:/),
        source: shadow,
        source_kind: 'directory',
        loaded_at: expect.any(String),
        entrypoints: ['portcullis/decision'],
        last_error: null,
        evaluated: expect.any(Number),
        disagreements: expect.any(Number),
        unrecorded: 0,
      },
    });
    expect(body.revision).not.toBe((body.shadow as { revision: string }).revision);
    expect(Date.now() - Date.parse(body.loaded_at as string)).toBeLessThan(60_000);
  });
});

describe('POST /admin/v1/policy/reload', () => {
  it('answers 422 with the compile error while the old revision keeps serving, then 200 with the new revision', async () => {
    const before = await json<{ revision: string }>(await admin('/policy'));
    const file = path.join(active, 'personal.rego');
    const good = await readFile(file, 'utf8');
    await writeFile(file, `${good}\nbroken := {"allow" true}\n`);
    try {
      const failed = await admin('/policy/reload', { method: 'POST' });
      expect(failed.status).toBe(422);
      expect(failed.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      const problem = await json(failed);
      expect(problem).toMatchObject({
        status: 422,
        type: 'urn:portcullis:problem:policy-rejected',
        revision: before.revision,
        error: { file, line: good.trimEnd().split('\n').length + 2, message: expect.stringMatching(/^rego_parse_error/) },
      });
      expect(problem.detail).toMatch(new RegExp(`keeps serving`));
      expect((await h.request('/orgs/acme', { token: await token('bob') })).status).toBe(200);
      expect(await json(await admin('/policy'))).toMatchObject({ revision: before.revision, last_error: { file } });
    } finally {
      await writeFile(
        file,
        good.replace(
          '"a user may read and update only their own profile"',
          '"a user may read and update only their own profile (reloaded)"',
        ),
      );
    }
    const reloaded = await admin('/policy/reload', { method: 'POST' });
    expect(reloaded.status).toBe(200);
    const body = await json<{ status: string; revision: string; policy: { revision: string; last_error: unknown } }>(reloaded);
    // The directory watcher may have loaded it first; either way the new revision serves.
    expect(['loaded', 'unchanged']).toContain(body.status);
    expect(body.revision).not.toBe(before.revision);
    expect(body.policy).toMatchObject({ revision: body.revision, last_error: null });
  });
});

describe('POST /admin/v1/evaluate', () => {
  it('runs the pipeline for a subject without a token: route, exact input, result, revision, recorded as a dry run, never forwarded', async () => {
    const forwarded = forwardedCount();
    const res = await admin('/evaluate', {
      method: 'POST',
      body: JSON.stringify({ subject: 'bob|sub', method: 'DELETE', path: '/orgs/acme' }),
    });
    expect(res.status).toBe(200);
    const body = await json<Explanation>(res);
    const { revision } = await json<{ revision: string }>(await admin('/policy'));
    expect(body).toMatchObject({
      dry_run: true,
      method: 'DELETE',
      path: '/orgs/acme',
      subject: { reference: 'bob|sub', sub: 'bob|sub', id: dir.users.bob, email: 'bob@example.com' },
      route: { pattern: '/orgs/{org}', action: 'organization:delete', service: 'organizations', params: { org: 'acme' } },
      action: 'organization:delete',
      resource: { type: 'organization', org: 'acme' },
      result: {
        allow: false,
        status: 403,
        reasons: ["missing permission 'organization:delete' in organization 'acme' (your roles there: default, project-creator)"],
      },
      revision,
      decision_id: expect.stringMatching(/^[0-9a-f-]{36}$/),
    });
    expect(body.input).toEqual({
      request: {
        id: expect.stringMatching(/^dry-run-/),
        method: 'DELETE',
        path: '/orgs/acme',
        route: '/orgs/{org}',
        time: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
        time_ns: expect.any(Number),
      },
      action: 'organization:delete',
      resource: { type: 'organization', org: 'acme' },
      subject: {
        id: dir.users.bob,
        sub: 'bob|sub',
        email: 'bob@example.com',
        memberships: {
          acme: {
            role: 'default',
            teams: ['deployers'],
            roles: ['default', 'project-creator'],
            permissions: ['member:read', 'organization:read', 'project:create', 'project:read', 'team:read'],
          },
        },
      },
      facts: { organization: { exists: true, project_count: 2, project_slugs: ['api', 'web'] } },
    });
    expect(forwardedCount()).toBe(forwarded);

    const record = await waitFor(
      () => h.database.db('decisions').where({ id: body.decision_id }).first<Record<string, unknown> | undefined>(),
      {
        timeoutMs: 5000,
        what: 'the dry-run record',
      },
    );
    expect(record).toMatchObject({
      dry_run: true,
      allow: false,
      status: 403,
      subject: 'bob|sub',
      action: 'organization:delete',
      policy_revision: revision,
      path: '/orgs/acme',
    });
  });

  it('accepts a users.id as the subject, and tells an allowed request from a denied one', async () => {
    const res = await admin('/evaluate', {
      method: 'POST',
      body: JSON.stringify({ subject: dir.users.alice, method: 'get', path: '/ORGS/acme/Projects/web/' }),
    });
    const body = await json<Explanation>(res);
    expect(body).toMatchObject({
      method: 'GET',
      path: '/orgs/acme/projects/web',
      subject: { reference: dir.users.alice, sub: 'alice|sub' },
      route: { pattern: '/orgs/{org}/projects/{project}', action: 'project:read' },
      result: { allow: true, status: 200, reasons: ["granted by permission '*' in organization 'acme'"] },
      missing_permission: null,
      // The candidate ignores "*": it would deny alice, and says so without being counted.
      shadow: { result: { allow: false, status: 403 }, agrees: false },
    });
  });

  it('names the roles of the organization that grant a missing permission, and the teams that carry them', async () => {
    const res = await admin('/evaluate', {
      method: 'POST',
      body: JSON.stringify({ subject: 'dave|sub', method: 'DELETE', path: '/orgs/acme' }),
    });
    const body = await json<Explanation>(res);
    expect(body.result).toEqual({
      allow: false,
      status: 403,
      reasons: ["missing permission 'organization:delete' in organization 'acme' (your roles there: default)"],
      code: 'missing_permission',
      params: { permission: 'organization:delete', organization: 'acme' },
    });
    expect(body.missing_permission).toMatchObject({
      permission: 'organization:delete',
      organization: 'acme',
      granted_by: [
        { role: 'organization-admin', builtin: true, via: ['*'], teams: [] },
        { role: 'owners', builtin: false, via: ['organization:*'], teams: ['leads'] },
      ],
      // acme still has projects: with any of them R5 answers 409 (test/explain.test.ts tries grants in depth).
      would_allow: [],
    });
  });

  it('answers a path no route matches with the 404 the gateway would give, recording nothing', async () => {
    const body = await json<Explanation>(
      await admin('/evaluate', { method: 'POST', body: JSON.stringify({ subject: 'alice|sub', method: 'GET', path: '/nowhere' }) }),
    );
    expect(body).toMatchObject({
      route: null,
      decision_id: null,
      input: null,
      result: { allow: false, status: 404, reasons: ['no route matches GET /nowhere'] },
    });
  });

  it('refuses a malformed body or path with a 400 problem', async () => {
    expect((await admin('/evaluate', { method: 'POST', body: '{"subject": "alice|sub"' })).status).toBe(400);
    expect((await admin('/evaluate', { method: 'POST', body: JSON.stringify({ subject: 'alice|sub', method: 'GET' }) })).status).toBe(400);
    const dotted = await admin('/evaluate', {
      method: 'POST',
      body: JSON.stringify({ subject: 'alice|sub', method: 'GET', path: '/orgs/acme/../globex' }),
    });
    expect(dotted.status).toBe(400);
    expect(dotted.headers.get('content-type')).toBe('application/problem+json');
  });
});

describe('denials name what is missing', () => {
  it('puts the missing permission in the 403 detail the client gets', async () => {
    const res = await h.request('/orgs/acme/credentials', { method: 'POST', token: await token('dave'), body: '{}' });
    expect(res.status).toBe(403);
    expect(((await res.json()) as { detail: string }).detail).toBe(
      "missing permission 'credential:create' in organization 'acme' (your roles there: default)",
    );
  });
});

describe('shadow policy', () => {
  it('is judged on every request but never enforced; each disagreement is recorded with both results and counted', async () => {
    const before = (await json<{ shadow: { evaluated: number; disagreements: number } }>(await admin('/policy'))).shadow;
    const alice = await token('alice');
    const bob = await token('bob');
    const answers: Response[] = [];
    for (const [who, pathname] of [
      [alice, '/orgs/acme'],
      [alice, '/orgs/acme/projects/api'],
      [bob, '/orgs/acme'],
      [bob, '/orgs/acme/projects'],
      [bob, '/orgs/globex'],
    ] as const) {
      answers.push(await h.request(pathname, { token: who }));
    }
    // The active policy decides: alice is allowed what only "*" grants her, although the shadow would deny it.
    expect(answers.map((res) => res.status)).toEqual([200, 200, 200, 200, 403]);

    const after = (await json<{ shadow: { evaluated: number; disagreements: number } }>(await admin('/policy'))).shadow;
    expect(after.evaluated - before.evaluated).toBe(5);
    expect(after.disagreements - before.disagreements).toBe(2);

    const aliceDecisions = answers.slice(0, 2).map((res) => res.headers.get('x-portcullis-decision')!);
    const rows = await waitFor(
      async () => {
        const found = await h.database
          .db<Record<string, unknown>>('policy_shadow_disagreements')
          .whereIn('decision_id', aliceDecisions)
          .orderBy('time');
        return found.length === 2 ? found : undefined;
      },
      { timeoutMs: 5000, what: 'the disagreements' },
    );
    const { revision, shadow: candidate } = await json<{ revision: string; shadow: { revision: string } }>(await admin('/policy'));
    expect(rows[0]).toMatchObject({
      subject: 'alice|sub',
      organization: 'acme',
      action: 'organization:read',
      method: 'GET',
      path: '/orgs/acme',
      active_revision: revision,
      active_allow: true,
      active_status: 200,
      active_reasons: ["granted by permission '*' in organization 'acme'"],
      shadow_revision: candidate.revision,
      shadow_allow: false,
      shadow_status: 403,
      shadow_reasons: ["missing permission 'organization:read' in organization 'acme' (your roles there: organization-admin)"],
    });
    expect(rows[0]?.input).toMatchObject({ action: 'organization:read', subject: { sub: 'alice|sub' } });
    expect(rows[1]).toMatchObject({ action: 'project:read', active_allow: true, shadow_allow: false });
    const bobDecisions = answers.slice(2).map((res) => res.headers.get('x-portcullis-decision')!);
    expect(await h.database.db('policy_shadow_disagreements').whereIn('decision_id', bobDecisions)).toEqual([]);
  });
});

describe('portcullis explain', () => {
  beforeAll(() => {
    requireBuild();
  });

  const explain = (args: string[]) => runExplain(work, { databaseUrl: h.database.url, policySource: active }, args);

  it('prints why a request is denied and which roles and teams would allow it, standalone with --config', async () => {
    const run = await explain(['--as', 'dave|sub', 'DELETE', '/orgs/acme']);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const lines = run.stdout.split('\n');
    expect(lines[0]).toBe(`DELETE /orgs/acme as dave|sub (user ${dir.users.dave}, dave@example.com)`);
    expect(run.stdout).toContain('route       DELETE /orgs/{org} -> organizations');
    expect(run.stdout).toContain('action      organization:delete');
    expect(run.stdout).toContain('membership  in acme: role default; teams (none); roles default');
    expect(run.stdout).toContain('            permissions member:read, organization:read, project:read, team:read');
    expect(run.stdout).toContain('facts       {"organization":{"exists":true,"project_count":2,"project_slugs":["api","web"]}}');
    expect(run.stdout).toMatch(/decision {4}DENY 403 {2}\(policy sha256:[0-9a-f]{16}, \d+ µs\)/);
    expect(run.stdout).toContain("  - missing permission 'organization:delete' in organization 'acme' (your roles there: default)");
    expect(run.stdout).toContain(
      "what would allow it: nothing in acme's directory. Every grant carrying 'organization:delete' leaves it denied:",
    );
    expect(run.stdout).toContain('  - default role organization-admin (built-in, via *): DENY 409');
    expect(run.stdout).toContain("  - joining team leads, which carries role owners (acme's own, via organization:*): DENY 409");
    expect(run.stdout).not.toContain('deleters');
    const decisionId = /recorded as dry-run decision ([0-9a-f-]{36})/.exec(run.stdout)?.[1];
    expect(await h.database.db('decisions').where({ id: decisionId }).first()).toMatchObject({
      dry_run: true,
      subject: 'dave|sub',
      status: 403,
    });
  });

  it('prints the same explanation as the admin API with --json', async () => {
    const run = await explain(['--as', dir.users.bob, 'GET', '/orgs/acme/projects', '--json']);
    expect(run.code).toBe(0);
    const body = JSON.parse(run.stdout) as Explanation;
    expect(body).toMatchObject({
      dry_run: true,
      subject: { sub: 'bob|sub' },
      route: { pattern: '/orgs/{org}/projects' },
      result: { allow: true, status: 200 },
    });
  });
});
