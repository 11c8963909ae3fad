// "What would allow it" against a running gateway, its database and the shipped policy: each
// grant the directory offers is tried by running the policy again with it added, so a role that
// carries the permission is never offered while another rule (R5's projects, R2's registration)
// still denies; and `portcullis explain` says so, or that nothing in the directory would do.
import { rm } from 'node:fs/promises';
import { expect } from '@jest/globals';
import type { Explanation } from '../src/authz/policy-explainer';
import { requireBuild, runExplain } from './support/cli-process';
import { seedDirectory } from './support/directory-fixtures';
import { startHarness, type Harness } from './support/gateway-harness';
import { scratchDir } from './support/policy-workspace';
import type { Inserted } from './support/rows';

const ADMIN_TOKEN = 'test-admin-token-0123456789';

let h: Harness;
let work: string;

async function evaluate(subject: string, method: string, pathname: string): Promise<Explanation> {
  const res = await fetch(`${h.gateway.adminUrl}/admin/v1/evaluate`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ subject, method, path: pathname }),
  });
  expect(res.status).toBe(200);
  return (await res.json()) as Explanation;
}

beforeAll(async () => {
  work = await scratchDir('explain');
  h = await startHarness();
  const dir = await seedDirectory(h.database.db);
  const db = h.database.db;
  // acme: owners (organization:*) carried by team leads; project-admin (project:*) carried by team releasers.
  const [owners] = (await db('roles')
    .insert({ organization_id: dir.orgs.acme, name: 'owners', permissions: ['organization:*', 'member:read'] })
    .returning('id')) as Inserted;
  const [leads] = (await db('teams').insert({ organization_id: dir.orgs.acme, name: 'leads' }).returning('id')) as Inserted;
  await db('team_roles').insert({ team_id: leads.id, role_id: owners.id });
  const [projectAdmin] = (await db('roles')
    .insert({ organization_id: dir.orgs.acme, name: 'project-admin', permissions: ['project:*'] })
    .returning('id')) as Inserted;
  const [releasers] = (await db('teams').insert({ organization_id: dir.orgs.acme, name: 'releasers' }).returning('id')) as Inserted;
  await db('team_roles').insert({ team_id: releasers.id, role_id: projectAdmin.id });
  // globex has no projects; its own role deleters may delete it.
  await db('roles').insert({ organization_id: dir.orgs.globex, name: 'deleters', permissions: ['organization:delete'] });
});

afterAll(async () => {
  await h?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

describe('what would allow a denied request', () => {
  it('offers no role while the organization still has projects: every grant of organization:delete still gets R5’s 409', async () => {
    const body = await evaluate('dave|sub', 'DELETE', '/orgs/acme');
    expect(body.result).toMatchObject({ allow: false, status: 403 });
    // objectContaining: a policy's decision may carry more than these (a code and its params).
    const stillHasProjects = expect.objectContaining({
      allow: false,
      status: 409,
      reasons: ["organization 'acme' still has 2 projects (api, web); delete them first"],
    });
    expect(body.missing_permission).toEqual({
      permission: 'organization:delete',
      organization: 'acme',
      granted_by: [
        { role: 'organization-admin', builtin: true, via: ['*'], teams: [] },
        { role: 'owners', builtin: false, via: ['organization:*'], teams: ['leads'] },
      ],
      would_allow: [],
      still_denied: [
        { change: 'default_role', role: 'organization-admin', team: null, result: stillHasProjects },
        { change: 'default_role', role: 'owners', team: null, result: stillHasProjects },
        { change: 'team', role: 'owners', team: 'leads', result: stillHasProjects },
      ],
    });
  });

  it('offers the default roles and the teams with which the policy, run again, allows it', async () => {
    // bob: default role `default`, in team deployers (project-creator); project:delete is missing.
    const body = await evaluate('bob|sub', 'DELETE', '/orgs/acme/projects/web');
    expect(body.result).toMatchObject({ allow: false, status: 403 });
    const allowedBy = (permission: string) =>
      expect.objectContaining({ allow: true, status: 200, reasons: [`granted by permission '${permission}' in organization 'acme'`] });
    expect(body.missing_permission?.would_allow).toEqual([
      { change: 'default_role', role: 'organization-admin', team: null, result: allowedBy('*') },
      { change: 'default_role', role: 'project-admin', team: null, result: allowedBy('project:*') },
      { change: 'team', role: 'project-admin', team: 'releasers', result: allowedBy('project:*') },
    ]);
    expect(body.missing_permission?.still_denied).toEqual([]);
  });

  it('offers a non-member a membership with a granting default role, built-in or the organization’s own', async () => {
    const body = await evaluate('erin|sub', 'DELETE', '/orgs/globex');
    expect(body.membership).toBeNull();
    expect(body.missing_permission?.would_allow.map((grant) => [grant.change, grant.role, grant.team])).toEqual([
      ['default_role', 'organization-admin', null],
      ['default_role', 'deleters', null],
    ]);
  });

  it('offers nothing to a subject with no users row: the policy still asks them to register first', async () => {
    const body = await evaluate('nobody|sub', 'GET', '/orgs/acme');
    expect(body.result.reasons).toEqual(["no user is registered for subject 'nobody|sub'; register first: PUT /users/me"]);
    expect(body.missing_permission?.would_allow).toEqual([]);
    expect(body.missing_permission?.still_denied.length).toBeGreaterThan(0);
    for (const grant of body.missing_permission?.still_denied ?? []) expect(grant.result).toEqual(body.result);
  });
});

describe('portcullis explain', () => {
  beforeAll(() => {
    requireBuild();
  });

  const explain = (args: string[]) =>
    runExplain(work, { databaseUrl: h.database.url, policySource: process.env.PORTCULLIS_TEST_BUNDLE! }, args);

  it('says that nothing in the directory would allow it, with what the policy still answers', async () => {
    const run = await explain(['--as', 'dave|sub', 'DELETE', '/orgs/acme']);
    expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
    expect(run.stdout).toContain(
      [
        "what would allow it: nothing in acme's directory. Every grant carrying 'organization:delete' leaves it denied:",
        "  - default role organization-admin (built-in, via *): DENY 409: organization 'acme' still has 2 projects (api, web); delete them first",
        "  - default role owners (acme's own, via organization:*): DENY 409: organization 'acme' still has 2 projects (api, web); delete them first",
        "  - joining team leads, which carries role owners (acme's own, via organization:*): DENY 409: organization 'acme' still has 2 projects (api, web); delete them first",
      ].join('\n'),
    );
  });

  it('lists only the grants with which the policy allows it', async () => {
    const run = await explain(['--as', 'bob|sub', 'DELETE', '/orgs/acme/projects/web']);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain(
      [
        'what would allow it (the policy run again with each grant added):',
        '  - default role organization-admin (built-in, via *)',
        "  - default role project-admin (acme's own, via project:*)",
        "  - joining team releasers, which carries role project-admin (acme's own, via project:*)",
      ].join('\n'),
    );
    const member = await explain(['--as', 'erin|sub', 'DELETE', '/orgs/globex']);
    expect(member.stdout).toContain('  - membership of globex with default role organization-admin (built-in, via *)');
  });
});
