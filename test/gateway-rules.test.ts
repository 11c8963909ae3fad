// The domain rules R1-R8 (design §1), end to end: real PostgreSQL, the shipped policies
// compiled to WebAssembly, real signed tokens, real upstreams on loopback.
import { seedDirectory, type Directory } from './support/directory-fixtures';
import { startHarness, type Harness } from './support/gateway-harness';
import type { Inserted, MembershipRow } from './support/rows';

let h: Harness;
let dir: Directory;
const token = (name: string) => h.tokens.sign(`${name}|sub`);
const forwardedCount = () => Object.values(h.upstreams).reduce((sum, upstream) => sum + upstream.received.length, 0);

beforeAll(async () => {
  // The rules, not the caches: several tests change the directory with plain SQL and ask at once,
  // which a cache learns of only by PostgreSQL's notification, within 1 s (cache-freshness.test.ts).
  h = await startHarness({ cache: { enabled: false } });
  dir = await seedDirectory(h.database.db, { globexProject: true });
});
afterAll(async () => h?.close());

async function expectDenied(res: Response, status: number, detail?: RegExp) {
  expect(res.status).toBe(status);
  expect(res.headers.get('content-type')).toBe('application/problem+json');
  const body = (await res.json()) as { status: number; detail: string; decision_id: string; type: string; title: string };
  expect(body.status).toBe(status);
  expect(body.decision_id).toBe(res.headers.get('x-portcullis-decision'));
  if (detail) expect(body.detail).toMatch(detail);
  return body;
}

describe('R1: a request without a valid bearer token gets 401', () => {
  it('answers 401 with WWW-Authenticate: Bearer when there is no token, forwarding nothing', async () => {
    const before = forwardedCount();
    const res = await h.request('/orgs/acme');
    await expectDenied(res, 401);
    expect(res.headers.get('www-authenticate')).toMatch(/^Bearer realm="portcullis"/);
    expect(forwardedCount()).toBe(before);
  });

  it('answers 401 for an expired token and for one from an untrusted issuer', async () => {
    await expectDenied(await h.request('/orgs/acme', { token: await h.tokens.sign('alice|sub', {}, { expiresIn: -60 }) }), 401, /expired/);
    await expectDenied(
      await h.request('/orgs/acme', { token: await h.tokens.sign('alice|sub', {}, { issuer: 'https://evil.example' }) }),
      401,
    );
  });
});

describe('R2: a user with no organization', () => {
  it('is denied anything organization-scoped and told how to get started', async () => {
    await expectDenied(
      await h.request('/orgs/acme/projects', { token: await token('carol') }),
      403,
      /belong to no organization; create one or accept an invitation/,
    );
  });

  it('may create an organization', async () => {
    const res = await h.request('/orgs', { method: 'POST', token: await token('carol'), body: '{"slug":"carolco"}' });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { service: string }).service).toBe('organizations');
  });

  it('may read and update their own profile', async () => {
    const read = await h.request('/users/me', { token: await token('carol') });
    expect(read.status).toBe(200);
    expect(((await read.json()) as { headers: Record<string, string> }).headers['x-portcullis-user']).toBe(dir.users.carol);
    expect((await h.request('/users/me', { method: 'PATCH', token: await token('carol'), body: '{}' })).status).toBe(200);
  });

  it('may accept an invitation addressed to their e-mail, and nobody else may', async () => {
    await expectDenied(
      await h.request(`/invitations/${dir.invitations.carol}/accept`, { method: 'POST', token: await token('erin') }),
      403,
    );
    expect((await h.request(`/invitations/${dir.invitations.carol}/accept`, { method: 'POST', token: await token('carol') })).status).toBe(
      200,
    );
  });
});

describe('R3: organizations are isolated', () => {
  it('does not let an admin of one organization act as admin in another', async () => {
    // dave is organization-admin of globex but only a default member of acme.
    await expectDenied(await h.request(`/orgs/acme/projects/api`, { method: 'DELETE', token: await token('dave') }), 403, /project:delete/);
    expect((await h.request('/orgs/globex/projects/secret', { method: 'DELETE', token: await token('dave') })).status).toBe(200);
  });

  it('denies a member of acme everything in globex', async () => {
    await expectDenied(await h.request('/orgs/globex', { token: await token('alice') }), 403);
  });
});

describe('R4: permissions are the default role plus the roles of the member’s teams', () => {
  it('grants bob project:create through his team, beyond his default role', async () => {
    expect((await h.request('/orgs/acme/projects', { method: 'POST', token: await token('bob'), body: '{}' })).status).toBe(200);
    await expectDenied(await h.request('/orgs/acme/projects/api', { method: 'DELETE', token: await token('bob') }), 403);
  });

  it('ignores a team role that belongs to another organization', async () => {
    const [foreign] = (await h.database
      .db('roles')
      .insert({ organization_id: dir.orgs.globex, name: 'globex-deleter', permissions: ['project:delete'] })
      .returning('id')) as Inserted;
    await h.database.db('team_roles').insert({ team_id: dir.teams.deployers, role_id: foreign.id });
    try {
      await expectDenied(await h.request('/orgs/acme/projects/web', { method: 'DELETE', token: await token('bob') }), 403);
    } finally {
      await h.database.db('team_roles').where({ team_id: dir.teams.deployers, role_id: foreign.id }).delete();
    }
  });

  it('stops counting team roles once the user is no longer a member of the organization', async () => {
    const membership = await h.database
      .db('organization_members')
      .where({ organization_id: dir.orgs.acme, user_id: dir.users.bob })
      .first<MembershipRow>();
    await h.database.db('organization_members').where({ organization_id: dir.orgs.acme, user_id: dir.users.bob }).delete();
    try {
      await expectDenied(await h.request('/orgs/acme/projects', { method: 'POST', token: await token('bob'), body: '{}' }), 403);
    } finally {
      await h.database.db('organization_members').insert(membership);
    }
  });
});

describe('R5: an organization with projects cannot be deleted', () => {
  it('answers 409 naming how many projects remain and which, forwarding nothing', async () => {
    const before = h.upstreams.organizations.received.length;
    const body = await expectDenied(await h.request('/orgs/acme', { method: 'DELETE', token: await token('alice') }), 409, /2 projects/);
    expect(body.detail).toMatch(/api/);
    expect(body.detail).toMatch(/web/);
    expect(h.upstreams.organizations.received.length).toBe(before);
  });

  it('requires organization:delete first, without revealing project names', async () => {
    const body = await expectDenied(
      await h.request('/orgs/acme', { method: 'DELETE', token: await token('bob') }),
      403,
      /organization:delete/,
    );
    expect(body.detail).not.toMatch(/api|web/);
  });

  it('lets an admin delete an organization that has no projects left', async () => {
    const [org] = (await h.database.db('organizations').insert({ slug: 'initech', name: 'Initech' }).returning('id')) as Inserted;
    const admin = await h.database
      .db('roles')
      .whereNull('organization_id')
      .where({ name: 'organization-admin' })
      .first<{ id: string }>('id');
    await h.database.db('organization_members').insert({ organization_id: org.id, user_id: dir.users.alice, role_id: admin.id });
    expect((await h.request('/orgs/initech', { method: 'DELETE', token: await token('alice') })).status).toBe(200);
  });
});

describe('R6: a user may read and update only their own profile', () => {
  it('allows /users/{own id} and denies another user’s profile', async () => {
    expect((await h.request(`/users/${dir.users.bob}`, { token: await token('bob') })).status).toBe(200);
    await expectDenied(await h.request(`/users/${dir.users.alice}`, { token: await token('bob') }), 403);
    await expectDenied(await h.request(`/users/${dir.users.alice}`, { method: 'PATCH', token: await token('bob'), body: '{}' }), 403);
  });
});

describe('R7: a resource addressed under the wrong organization', () => {
  it('is denied as not found by id and by slug, and never forwarded', async () => {
    const before = h.upstreams.projects.received.length;
    await expectDenied(await h.request(`/orgs/globex/projects/${dir.projects.api}`, { token: await token('dave') }), 404);
    await expectDenied(await h.request('/orgs/globex/projects/api', { token: await token('dave') }), 404);
    expect(h.upstreams.projects.received.length).toBe(before);
  });
});

describe('R8: deny by default, fail closed', () => {
  it('answers 404 for a path no route matches, forwarding nothing', async () => {
    const before = forwardedCount();
    const res = await h.request('/admin/secrets', { token: await token('alice') });
    expect(res.status).toBe(404);
    expect(res.headers.get('content-type')).toBe('application/problem+json');
    expect((await h.request('/orgs/acme', { method: 'PUT', token: await token('alice') })).status).toBe(404);
    expect(forwardedCount()).toBe(before);
  });

  it('denies a token whose subject is not a registered user', async () => {
    await expectDenied(
      await h.request('/orgs', { method: 'POST', token: await h.tokens.sign('nobody|sub') }),
      403,
      /no user is registered/,
    );
  });
});
