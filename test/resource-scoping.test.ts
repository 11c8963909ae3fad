// R7 for every resource in the path (issue 10, items 4, 5, 13): each parameter of every
// default organization route is checked against the organization (404, never forwarded),
// identifiers keep their case and are looked up percent-decoded, slugs are lower-case, a
// route may leave a parameter to the upstream only by saying so, and escapes that are not
// valid UTF-8 are refused. Real PostgreSQL, the shipped policy, real tokens and upstreams.
import { Writable } from 'node:stream';
import pino from 'pino';
import { routeTable } from '../src/app';
import { parseConfig } from '../src/config/load-config';
import { defaultRoutes } from '../src/routes/default-routes';
import { seedDirectory, type Directory } from './support/directory-fixtures';
import type { EchoedRequest } from './support/echo-upstream';
import { startHarness, type Harness } from './support/gateway-harness';
import { rawRequest } from './support/raw-http';
import type { Inserted } from './support/rows';
import { waitFor } from './support/wait-for';

let h: Harness;
let dir: Directory;
let alice: string;
let globexTeam: string;
let globexRole: string;
let grace: string;
let globexInvitation: string;

const forwardedCount = () => Object.values(h.upstreams).reduce((sum, upstream) => sum + upstream.received.length, 0);
const echoed = async (res: Response) => {
  expect(res.status).toBe(200);
  return (await res.json()) as EchoedRequest;
};

beforeAll(async () => {
  h = await startHarness();
  dir = await seedDirectory(h.database.db, { globexProject: true });
  const db = h.database.db;
  globexTeam = ((await db('teams').insert({ organization_id: dir.orgs.globex, name: 'globex-team' }).returning('id')) as Inserted)[0].id;
  globexRole = (
    (await db('roles').insert({ organization_id: dir.orgs.globex, name: 'globex-role', permissions: [] }).returning('id')) as Inserted
  )[0].id;
  grace = ((await db('users').insert({ subject: 'grace|sub', email: 'grace@example.com' }).returning('id')) as Inserted)[0].id;
  const defaultRole = (await db('roles').whereNull('organization_id').where({ name: 'default' }).first<{ id: string }>('id')).id;
  await db('organization_members').insert({ organization_id: dir.orgs.globex, user_id: grace, role_id: defaultRole });
  globexInvitation = (
    (await db('invitations')
      .insert({ organization_id: dir.orgs.globex, email: 'erin@example.com', role_id: defaultRole })
      .returning('id')) as Inserted
  )[0].id;
  alice = await h.tokens.sign('alice|sub');
});
afterAll(async () => h?.close());

describe('R7 for every parameter of the default route table', () => {
  // For each parameter: a value of acme, and values of another organization or of none.
  const valid = (): Record<string, string> => ({
    org: 'acme',
    project: 'api',
    team: 'deployers',
    role: 'project-creator',
    user: dir.users.bob,
    credential: 'Key_AbC',
    invitation: dir.invitations.carol,
  });
  const invalid = (): Record<string, [what: string, value: string][]> => ({
    project: [
      ["another organization's, by id", dir.projects.globexSecret!],
      ["another organization's, by slug", 'secret'],
      ['none', 'nope'],
    ],
    team: [
      ["another organization's, by id", globexTeam],
      ["another organization's, by name", 'globex-team'],
      ['none', 'nope'],
    ],
    role: [
      ["another organization's, by id", globexRole],
      ["another organization's, by name", 'globex-role'],
      ['none', 'nope'],
    ],
    user: [
      ['a user of no organization', dir.users.erin],
      ['a member of another organization only', grace],
      ['none', '00000000-0000-4000-8000-000000000000'],
    ],
    credential: [
      ["another organization's, by id", dir.credentials.globexKey],
      ["another organization's, by slug", 'globex-key'],
      ['none', 'nope'],
    ],
    invitation: [
      ["another organization's", globexInvitation],
      ['none', '00000000-0000-4000-8000-000000000000'],
      ['not an id', 'nope'],
    ],
  });
  const organizationRoutes = defaultRoutes.filter((route) => route.path.startsWith('/orgs/{org}/'));
  const fill = (pattern: string, values: Record<string, string>) =>
    pattern.replace(/\{(\w+)\}/g, (_, name: string) => encodeURIComponent(values[name]!)).replace(/\*$/, 'Run-1/Logs');

  it('covers every parameter of the organization routes', () => {
    const params = new Set(organizationRoutes.flatMap((route) => [...route.path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]!)));
    expect([...params].sort()).toEqual(['credential', 'invitation', 'org', 'project', 'role', 'team', 'user']);
    expect(Object.keys(invalid()).sort()).toEqual([...params].filter((name) => name !== 'org').sort());
  });

  it('forwards each route when every parameter belongs to the organization', async () => {
    for (const route of organizationRoutes) {
      const target = fill(route.path, valid());
      const res = await h.request(target, {
        method: route.method,
        token: alice,
        body: ['GET', 'DELETE'].includes(route.method) ? undefined : '{}',
      });
      expect([route.method, target, res.status]).toEqual([route.method, target, 200]);
      expect(((await res.json()) as EchoedRequest).url).toBe(target);
    }
  });

  it('answers 404 for a parameter of another organization or of none, naming it, and forwards nothing', async () => {
    let checked = 0;
    for (const route of organizationRoutes) {
      for (const [name, cases] of Object.entries(invalid())) {
        if (!route.path.includes(`{${name}}`)) continue;
        for (const [what, value] of cases) {
          const target = fill(route.path, { ...valid(), [name]: value });
          const before = forwardedCount();
          const res = await h.request(target, {
            method: route.method,
            token: alice,
            body: ['GET', 'DELETE'].includes(route.method) ? undefined : '{}',
          });
          const body = (await res.json()) as { status: number; detail: string };
          expect({ route: `${route.method} ${route.path}`, name, what, status: res.status }).toEqual({
            route: `${route.method} ${route.path}`,
            name,
            what,
            status: 404,
          });
          expect(body.detail).toContain(`'${value}'`);
          expect(forwardedCount()).toBe(before);
          checked += 1;
        }
      }
    }
    expect(checked).toBeGreaterThan(90);
  });

  it('scopes a pipeline and everything under it by its project', async () => {
    const target = `/orgs/acme/projects/${dir.projects.globexSecret}/pipelines/Run-1/Logs`;
    const res = await h.request(target, { method: 'POST', token: alice, body: '{}' });
    expect(res.status).toBe(404);
    expect(((await res.json()) as { detail: string }).detail).toMatch(/project '.*' not found in organization 'acme'/);
  });

  it('notices a credential moved to another organization (the facts cache is evicted)', async () => {
    const db = h.database.db;
    const [moving] = (await db('credentials')
      .insert({ organization_id: dir.orgs.acme, slug: 'moving', name: 'moving' })
      .returning('id')) as Inserted;
    for (const target of ['/orgs/acme/credentials/moving', `/orgs/acme/credentials/${moving.id}`]) {
      expect((await h.request(target, { token: alice })).status).toBe(200);
      expect((await h.request(target, { token: alice })).status).toBe(200);
    }
    await db('credentials').where({ id: moving.id }).update({ organization_id: dir.orgs.globex });
    await waitFor(async () => (await h.request('/orgs/acme/credentials/moving', { token: alice })).status === 404, {
      timeoutMs: 3000,
      what: 'the old name to be refused',
    });
    await waitFor(async () => (await h.request(`/orgs/acme/credentials/${moving.id}`, { token: alice })).status === 404, {
      timeoutMs: 3000,
      what: 'the id to be refused',
    });
  });

  it('notices a team member who left the organization', async () => {
    const db = h.database.db;
    const [frank] = (await db('users').insert({ subject: 'frank|sub', email: 'frank@example.com' }).returning('id')) as Inserted;
    const role = (await db('roles').whereNull('organization_id').where({ name: 'default' }).first<{ id: string }>('id')).id;
    await db('organization_members').insert({ organization_id: dir.orgs.acme, user_id: frank.id, role_id: role });
    const target = `/orgs/acme/teams/deployers/members/${frank.id}`;
    expect((await h.request(target, { token: alice })).status).toBe(200);
    await db('organization_members').where({ organization_id: dir.orgs.acme, user_id: frank.id }).delete();
    await waitFor(async () => (await h.request(target, { token: alice })).status === 404, {
      timeoutMs: 3000,
      what: `${target} to be refused`,
    });
  });
});

describe('identifiers keep their case', () => {
  it('matches route literals in any case and forwards parameters as sent', async () => {
    const seen = await echoed(await h.request('/ORGS/acme/Credentials/Key_AbC?Q=X', { token: alice }));
    expect(seen.url).toBe('/orgs/acme/credentials/Key_AbC?Q=X');
    expect(seen.service).toBe('credentials');
  });

  it('does not fold a parameter onto another resource', async () => {
    const before = forwardedCount();
    const res = await h.request('/orgs/acme/credentials/key_abc', { token: alice });
    expect(res.status).toBe(404);
    expect(((await res.json()) as { detail: string }).detail).toBe("credential 'key_abc' not found in organization 'acme'");
    expect(forwardedCount()).toBe(before);
  });

  it('addresses a team by its mixed-case name, and by no other spelling', async () => {
    expect((await echoed(await h.request('/orgs/acme/teams/Builders', { token: alice }))).url).toBe('/orgs/acme/teams/Builders');
    expect((await h.request('/orgs/acme/teams/builders', { token: alice })).status).toBe(404);
  });

  it('looks a team up by its percent-decoded name and forwards the name still encoded', async () => {
    const res = await h.request('/orgs/acme/teams/core%20team', { method: 'PATCH', token: alice, body: '{}' });
    const seen = await echoed(res);
    expect(seen.url).toBe('/orgs/acme/teams/core%20team');
    const id = res.headers.get('x-portcullis-decision')!;
    const record = await waitFor(
      async () =>
        await h.database
          .db('decisions')
          .where({ id })
          .first<{ path: string; resource: Record<string, string> } | undefined>('path', 'resource'),
      { timeoutMs: 3000, what: 'the decision record' },
    );
    expect(record).toEqual({ path: '/orgs/acme/teams/core%20team', resource: { type: 'team', org: 'acme', team: 'core team' } });
  });

  it('finds no organization by an upper-case slug (slugs are lower-case)', async () => {
    const before = forwardedCount();
    for (const target of ['/orgs/ACME', '/orgs/Acme/projects/api']) {
      const res = await h.request(target, { token: alice });
      expect([target, res.status]).toEqual([target, 404]);
      expect(((await res.json()) as { detail: string }).detail).toMatch(/^organization 'A(CME|cme)' not found$/);
    }
    expect(forwardedCount()).toBe(before);
    await expect(h.database.db('organizations').insert({ slug: 'ACME', name: 'Shadow' })).rejects.toMatchObject({ code: '23514' });
  });
});

describe('percent-escapes that are not valid UTF-8', () => {
  it.each([
    ['an overlong "/"', '/orgs/acme/credentials/%C0%AF'],
    ['overlong dots', '/orgs/acme/credentials/%C0%AE%C0%AE/x'],
    ['a three-byte overlong "/"', '/orgs/acme/credentials/a%E0%80%AFb'],
    ['a lone continuation byte', '/orgs/acme/credentials/%80'],
    ['a truncated sequence', '/orgs/acme/teams/caf%C3'],
    ['a surrogate', '/orgs/acme/teams/%ED%A0%80'],
    ['a code point above U+10FFFF', '/orgs/acme/teams/%F4%90%80%80'],
  ])('answers 400 for %s and forwards nothing', async (_what, target) => {
    const before = forwardedCount();
    const res = await rawRequest(
      h.gateway.gatewayUrl,
      `GET ${target} HTTP/1.1\nHost: x\nAuthorization: Bearer ${alice}\nConnection: close\n\n`,
    );
    expect(res.status).toBe(400);
    expect(res.headers).toMatch(/content-type: application\/problem\+json/i);
    expect(res.body).toMatch(/not valid UTF-8/);
    expect(forwardedCount()).toBe(before);
  });
});

describe('checked_by: upstream', () => {
  const config = (routes: unknown[]) =>
    parseConfig(
      {
        auth: { issuer: 'https://id.example', audience: 'portcullis', jwks_file: 'jwks.json' },
        services: { organizations: { url: 'http://127.0.0.1:1' }, credentials: { url: 'http://127.0.0.1:2' } },
        routes,
      },
      {},
      '/tmp',
    );

  function capturingLogger() {
    const lines: string[] = [];
    const stream = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    return { logger: pino({ level: 'info' }, stream), lines };
  }

  it('logs one start-up line listing every parameter forwarded unchecked', () => {
    const { logger, lines } = capturingLogger();
    routeTable(
      config([
        {
          method: 'GET',
          path: '/orgs/{org}/reports/{report}',
          action: 'report:read',
          service: 'organizations',
          checked_by: { report: 'upstream' },
        },
        {
          method: 'GET',
          path: '/orgs/{org}/credentials/{credential}',
          action: 'credential:read',
          service: 'credentials',
          checked_by: { credential: 'upstream' },
        },
      ]),
      logger,
    );
    const unchecked = lines.filter((line) => line.includes('checked_by: upstream'));
    expect(unchecked).toHaveLength(1);
    expect(unchecked[0]).toContain('GET /orgs/{org}/reports/{report} {report}');
    expect(unchecked[0]).toContain('GET /orgs/{org}/credentials/{credential} {credential}');
    expect(unchecked[0]).toContain("the assertion's org claim");
  });

  it('logs no such line for the default routes', () => {
    const { logger, lines } = capturingLogger();
    routeTable(config([]), logger);
    expect(lines.filter((line) => line.includes('checked_by'))).toEqual([]);
  });

  it('refuses another checker, and an organization route parameter nobody checks, naming the key', () => {
    expect(() =>
      config([
        {
          method: 'GET',
          path: '/orgs/{org}/reports/{report}',
          action: 'report:read',
          service: 'organizations',
          checked_by: { report: 'nobody' },
        },
      ]),
    ).toThrow(/routes\.0\.checked_by\.report: the only checker is "upstream"/);
    const { logger } = capturingLogger();
    expect(() =>
      routeTable(
        config([{ method: 'GET', path: '/orgs/{org}/reports/{report}', action: 'report:read', service: 'organizations' }]),
        logger,
      ),
    ).toThrow(/cannot check that \{report\} belongs to \{org\}.*checked_by: \{ report: upstream \}/);
  });

  it('forwards the marked parameter unchecked, still checking the organization and the rest', async () => {
    const local = await startHarness({
      routes: [
        {
          method: 'GET',
          path: '/orgs/{org}/credentials/{credential}',
          action: 'credential:read',
          service: 'credentials',
          checked_by: { credential: 'upstream' },
        },
        {
          method: 'GET',
          path: '/orgs/{org}/projects/{project}/reports/{report}',
          action: 'project:read',
          service: 'projects',
          checked_by: { report: 'upstream' },
        },
      ],
    });
    try {
      await seedDirectory(local.database.db, { globexProject: true });
      const token = await local.tokens.sign('alice|sub');
      const foreign = await local.request('/orgs/acme/credentials/globex-key', { token });
      expect(foreign.status).toBe(200);
      const seen = (await foreign.json()) as EchoedRequest;
      expect(seen.url).toBe('/orgs/acme/credentials/globex-key');
      expect(seen.headers['x-portcullis-org']).toBe('acme');
      expect((await local.request('/orgs/acme/projects/api/reports/Q3', { token })).status).toBe(200);
      expect((await local.request('/orgs/acme/projects/secret/reports/Q3', { token })).status).toBe(404);
      expect((await local.request('/orgs/globex/credentials/globex-key', { token })).status).toBe(403);
    } finally {
      await local.close();
    }
  });
});
