// The gateway side of the directory service (issue 12), against echo upstreams: the routes the
// service needs exist, each reaches the policy outcome its rule gives (registering, leaving,
// invitations and team roles scoped to their organization, the change log), and the identity
// assertion carries the token's profile claims the service registers a user from.
import { decodeJwt } from 'jose';
import { seedDirectory, type Directory } from './support/directory-fixtures';
import { startHarness, type Harness } from './support/gateway-harness';
import { createTestDatabase, type TestDatabase } from './support/test-database';

let database: TestDatabase;
let dir: Directory;
let h: Harness;
let globexRole: string;

beforeAll(async () => {
  database = await createTestDatabase();
  dir = await seedDirectory(database.db);
  globexRole = (
    await database
      .db('roles')
      .insert({ organization_id: dir.orgs.globex, name: 'spy', permissions: ['*'] })
      .returning<{ id: string }[]>('id')
  )[0]!.id;
  h = await startHarness({}, { database });
});
afterAll(async () => {
  await h?.close();
  await database?.drop();
});

const tokens = new Map<string, Promise<string>>();
const tokenOf = (sub: string, claims: Record<string, unknown> = {}) => {
  const key = `${sub} ${JSON.stringify(claims)}`;
  if (!tokens.has(key)) tokens.set(key, h.tokens.sign(sub, claims));
  return tokens.get(key)!;
};

interface Outcome {
  status: number;
  detail?: string;
}

async function call(user: string, method: string, path: string, claims: Record<string, unknown> = {}): Promise<Outcome> {
  const res = await h.request(path, {
    method,
    token: await tokenOf(`${user}|sub`, claims),
    ...(method === 'GET' || method === 'DELETE' ? {} : { body: '{}' }),
  });
  if (res.headers.get('content-type')?.startsWith('application/problem+json'))
    return { status: res.status, detail: ((await res.json()) as { detail: string }).detail };
  await res.arrayBuffer();
  return { status: res.status };
}

/** The last request the service's echo upstream received. */
const lastReceived = (service: 'organizations' | 'users') => h.upstreams[service].received.at(-1)!;

describe('registering (PUT /users/me) and the unregistered subject', () => {
  const profile = { email: 'Newcomer@Example.com', email_verified: true, name: 'New Comer' };

  it('forwards a verified subject without a users row to register, with its profile claims in the assertion', async () => {
    expect(await call('newcomer', 'PUT', '/users/me', profile)).toEqual({ status: 200 });
    const received = lastReceived('users');
    expect({ method: received.method, url: received.url }).toEqual({ method: 'PUT', url: '/users/me' });
    expect(received.headers['x-portcullis-user']).toBeUndefined();
    const assertion = decodeJwt(received.headers['x-portcullis-assertion'] as string);
    expect(assertion).toMatchObject({
      portcullis_sub: 'newcomer|sub',
      aud: 'portcullis:users',
      email: 'Newcomer@Example.com',
      email_verified: true,
      name: 'New Comer',
    });
    expect(assertion).not.toHaveProperty('sub');
  });

  it('lets a registered user register again (idempotent)', async () => {
    expect(await call('carol', 'PUT', '/users/me')).toEqual({ status: 200 });
    expect(lastReceived('users').headers['x-portcullis-user']).toBe(dir.users.carol);
  });

  it.each([
    ['GET', '/users/me'],
    ['PATCH', '/users/me'],
    ['GET', '/orgs'],
    ['POST', '/orgs'],
    ['GET', '/orgs/acme'],
    ['DELETE', '/orgs/acme/members/me'],
  ])('denies %s %s to a subject without a users row, telling them to register first', async (method, path) => {
    expect(await call('newcomer', method, path, profile)).toEqual({
      status: 403,
      detail: "no user is registered for subject 'newcomer|sub'; register first: PUT /users/me",
    });
  });
});

describe('organizations and members', () => {
  it('lets any registered user list their organizations (GET /orgs), with or without one', async () => {
    expect(await call('carol', 'GET', '/orgs')).toEqual({ status: 200 });
    expect(await call('alice', 'GET', '/orgs')).toEqual({ status: 200 });
    expect(lastReceived('organizations').url).toBe('/orgs');
  });

  it('lets any member leave (DELETE /orgs/{org}/members/me) without member:remove, and no one else', async () => {
    expect(await call('bob', 'DELETE', '/orgs/acme/members/u1')).toMatchObject({ status: 404 });
    expect(await call('bob', 'DELETE', `/orgs/acme/members/${dir.users.dave}`)).toEqual({
      status: 403,
      detail: "missing permission 'member:remove' in organization 'acme' (your roles there: default, project-creator)",
    });
    expect(await call('bob', 'DELETE', '/orgs/acme/members/me')).toEqual({ status: 200 });
    expect(lastReceived('organizations').headers['x-portcullis-org']).toBe('acme');
    expect(await call('carol', 'DELETE', '/orgs/acme/members/me')).toMatchObject({ status: 403 });
    expect(await call('bob', 'DELETE', '/orgs/globex/members/me')).toEqual({
      status: 403,
      detail: "you are not a member of organization 'globex'",
    });
  });
});

describe('invitations under an organization (R7)', () => {
  it('lets holders of member:read list and holders of member:invite send them', async () => {
    expect(await call('bob', 'GET', '/orgs/acme/invitations')).toEqual({ status: 200 });
    expect(await call('alice', 'POST', '/orgs/acme/invitations')).toEqual({ status: 200 });
    expect(await call('bob', 'POST', '/orgs/acme/invitations')).toEqual({
      status: 403,
      detail: "missing permission 'member:invite' in organization 'acme' (your roles there: default, project-creator)",
    });
  });

  it("revokes only the organization's own invitations: another organization's, an unknown or a malformed id is not found", async () => {
    expect(await call('bob', 'GET', `/orgs/acme/invitations/${dir.invitations.carol}`)).toEqual({ status: 200 });
    expect(await call('alice', 'DELETE', `/orgs/acme/invitations/${dir.invitations.carol}`)).toEqual({ status: 200 });
    expect(await call('dave', 'GET', `/orgs/globex/invitations/${dir.invitations.carol}`)).toMatchObject({ status: 404 });
    // dave administers globex; carol's invitation is acme's.
    expect(await call('dave', 'DELETE', `/orgs/globex/invitations/${dir.invitations.carol}`)).toEqual({
      status: 404,
      detail: `invitation '${dir.invitations.carol}' not found in organization 'globex'`,
    });
    expect(await call('alice', 'DELETE', '/orgs/acme/invitations/00000000-0000-4000-8000-000000000000')).toMatchObject({ status: 404 });
    expect(await call('alice', 'DELETE', '/orgs/acme/invitations/not-an-id')).toMatchObject({ status: 404 });
  });
});

describe("teams' roles and members", () => {
  it("attaches built-in roles and the organization's own roles to a team, never another organization's (R7)", async () => {
    expect(await call('alice', 'PUT', '/orgs/acme/teams/deployers/roles/default')).toEqual({ status: 200 });
    expect(await call('alice', 'PUT', '/orgs/acme/teams/deployers/roles/project-creator')).toEqual({ status: 200 });
    expect(await call('alice', 'DELETE', '/orgs/acme/teams/deployers/roles/project-creator')).toEqual({ status: 200 });
    expect(await call('alice', 'PUT', `/orgs/acme/teams/deployers/roles/${globexRole}`)).toEqual({
      status: 404,
      detail: `role '${globexRole}' not found in organization 'acme'`,
    });
    expect(await call('alice', 'PUT', '/orgs/acme/teams/deployers/roles/spy')).toEqual({
      status: 404,
      detail: "role 'spy' not found in organization 'acme'",
    });
  });

  it("reads a team's roles with team:read and changes them only with team:update", async () => {
    expect(await call('bob', 'GET', '/orgs/acme/teams/deployers/roles')).toEqual({ status: 200 });
    expect(await call('bob', 'PUT', '/orgs/acme/teams/deployers/roles/default')).toMatchObject({ status: 403 });
  });

  it('adds only members of the organization to its teams (PUT .../members/{user})', async () => {
    expect(await call('alice', 'PUT', `/orgs/acme/teams/deployers/members/${dir.users.dave}`)).toEqual({ status: 200 });
    expect(await call('alice', 'PUT', `/orgs/acme/teams/deployers/members/${dir.users.carol}`)).toEqual({
      status: 404,
      detail: `user '${dir.users.carol}' is not a member of organization 'acme'`,
    });
  });
});

describe("an organization's change log (GET /orgs/{org}/events, audit:read)", () => {
  it('is open to an organization-admin through * and closed to a default member', async () => {
    expect(await call('alice', 'GET', '/orgs/acme/events')).toEqual({ status: 200 });
    expect(await call('dave', 'GET', '/orgs/acme/events')).toEqual({
      status: 403,
      detail: "missing permission 'audit:read' in organization 'acme' (your roles there: default)",
    });
  });
});

describe('profile pictures', () => {
  it('lets a user upload their own picture and read only their own', async () => {
    expect(await call('carol', 'PUT', '/users/me/picture')).toEqual({ status: 200 });
    expect(await call('carol', 'GET', `/users/${dir.users.carol}/picture`)).toEqual({ status: 200 });
    expect(await call('bob', 'GET', `/users/${dir.users.carol}/picture`)).toEqual({
      status: 403,
      detail: 'a user may read and update only their own profile',
    });
  });
});
