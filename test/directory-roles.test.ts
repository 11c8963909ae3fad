// Roles through the running gateway and directory service, with real tokens on a real
// PostgreSQL: the permission grammar, reserved and taken names, immutable built-in roles, no
// deletion while in use (409 naming where), and no escalation (403 naming what is missing).
import { expect } from '@jest/globals';
import type { DirectoryEventRow } from '../src/directory-service/directory-events';
import type { Page } from '../src/directory-service/http-semantics';
import type { Role, RoleRow } from '../src/directory-service/role-store';
import type { Directory } from './support/directory-fixtures';
import { startDirectoryStack, type Caller, type DirectoryStack, type Problem } from './support/directory-stack';
import { waitFor } from './support/wait-for';

let stack: DirectoryStack;
let alice: Caller;
let bob: Caller;
let dave: Caller;
let users: Directory['users'];
let acme: string;

const db = () => stack.database.db;
const createRole = <T = Role>(caller: Caller, name: string, permissions: string[], headers: Record<string, string> = {}) =>
  caller.request<T>('/orgs/acme/roles', { method: 'POST', json: { name, permissions }, headers });

beforeAll(async () => {
  stack = await startDirectoryStack();
  users = stack.directory!.users;
  acme = stack.directory!.orgs.acme;
  [alice, bob, dave] = await Promise.all([stack.as('alice'), stack.as('bob'), stack.as('dave')]);
});

afterAll(async () => {
  await stack?.close();
});

describe('permissions', () => {
  it('stores resource:verb, resource:* and * once each, in code-point order', async () => {
    const response = await createRole(alice, 'release-manager', ['project:update', 'pipeline:*', 'project:update', 'audit:read']);
    expect(response.status).toBe(201);
    const role = await response.json();
    expect(role).toEqual({
      id: expect.any(String),
      name: 'release-manager',
      permissions: ['audit:read', 'pipeline:*', 'project:update'],
      builtin: false,
    });
    expect(response.headers.get('location')).toBe(`/orgs/acme/roles/${role.id}`);
    expect((await db()<RoleRow>('roles').where({ id: role.id }).first())?.permissions).toEqual([
      'audit:read',
      'pipeline:*',
      'project:update',
    ]);
    expect(await (await alice.request<Role>('/orgs/acme/roles/release-manager')).json()).toEqual(role);
    expect((await createRole(alice, 'everything', ['*'])).status).toBe(201);
  });

  it.each(['Project:read', 'project', 'project:', '*:read', 'project:read:all', 'project: read', ''])(
    'refuses the permission %j (422 naming it)',
    async (permission) => {
      const response = await createRole<Problem>(alice, 'bad-grammar', ['project:read', permission]);
      expect(response.status).toBe(422);
      expect((await response.json()).detail).toContain(`'${permission}' is not a permission: use resource:verb, resource:* or *`);
      expect(await db()('roles').where({ name: 'bad-grammar' })).toEqual([]);
    },
  );

  it('refuses more than 100 permissions (422)', async () => {
    const permissions = Array.from({ length: 101 }, (_, i) => `service${i}:read`);
    expect((await createRole(alice, 'too-many', permissions)).status).toBe(422);
  });
});

describe('names', () => {
  it.each(['default', 'organization-admin', 'Default', 'Organization-Admin'])(
    "refuses the built-in role's name %s (409), the database constraint having the last word",
    async (name) => {
      const response = await createRole<Problem>(alice, name, ['project:read']);
      expect(response.status).toBe(409);
      expect((await response.json()).detail).toBe(`'${name}' is the name of a built-in role; choose another name`);
    },
  );

  it('refuses a name taken in the organization (409), on creation and on rename', async () => {
    const taken = await createRole<Problem>(alice, 'project-creator', []);
    expect(taken.status).toBe(409);
    expect((await taken.json()).detail).toBe("a role named 'project-creator' already exists in this organization");
    expect((await createRole(alice, 'renamable', [])).status).toBe(201);
    expect((await alice.request('/orgs/acme/roles/renamable', { method: 'PATCH', json: { name: 'project-creator' } })).status).toBe(409);
    expect((await alice.request('/orgs/acme/roles/renamable', { method: 'PATCH', json: { name: 'default' } })).status).toBe(409);
  });

  it('lists the built-in roles and the organization’s own, page by page, never another organization’s', async () => {
    await db()('roles').insert({ organization_id: stack.directory!.orgs.globex, name: 'globex-secret', permissions: ['*'] });
    const roles: { name: string; builtin: boolean }[] = [];
    let cursor: string | null = null;
    do {
      const page = await (await alice.request<Page<Role>>(`/orgs/acme/roles?limit=2${cursor ? `&cursor=${cursor}` : ''}`)).json();
      roles.push(...page.items);
      cursor = page.next_cursor;
    } while (cursor !== null);
    expect(roles.map((role) => role.name)).not.toContain('globex-secret');
    expect(roles).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ name: 'default', builtin: true }),
        expect.objectContaining({ name: 'project-creator', builtin: false }),
      ]),
    );
    const expected = await db()('roles')
      .where((where) => {
        where.whereNull('organization_id').orWhere({ organization_id: acme });
      })
      .orderBy(['name', 'id'])
      .pluck<string[]>('name');
    expect(roles.map((role) => role.name)).toEqual(expected);
    expect((await alice.request('/orgs/acme/roles/globex-secret')).status).toBe(404);
  });
});

describe('built-in roles', () => {
  it.each([
    ['PATCH', { permissions: ['project:read'] }],
    ['DELETE', undefined],
  ])('are immutable: %s /orgs/acme/roles/organization-admin is 403 and changes nothing', async (method, body) => {
    const response = await alice.request<Problem>('/orgs/acme/roles/organization-admin', { method, ...(body ? { json: body } : {}) });
    expect(response.status).toBe(403);
    expect((await response.json()).detail).toContain("the built-in role 'organization-admin' cannot be");
    expect((await db()<RoleRow>('roles').whereNull('organization_id').where({ name: 'organization-admin' }).first())?.permissions).toEqual([
      '*',
    ]);
  });
});

describe('changing and deleting a role', () => {
  it('replaces permissions under If-Match (412 when stale) and records the change', async () => {
    const created = await createRole(alice, 'observer', ['project:read']);
    const etag = created.headers.get('etag')!;
    const stale = await alice.request('/orgs/acme/roles/observer', {
      method: 'PATCH',
      json: { permissions: ['project:*'] },
      headers: { 'if-match': '"stale"' },
    });
    expect(stale.status).toBe(412);
    const changed = await alice.request('/orgs/acme/roles/observer', {
      method: 'PATCH',
      json: { permissions: ['project:*', 'team:read'] },
      headers: { 'if-match': etag },
    });
    expect(changed.status).toBe(200);
    expect(await changed.json()).toMatchObject({ name: 'observer', permissions: ['project:*', 'team:read'] });
    expect(changed.headers.get('etag')).not.toBe(etag);
    const [event] = await db()<DirectoryEventRow>('directory_events').where({ action: 'role.update' });
    expect(event).toMatchObject({
      actor: users.alice,
      target_type: 'role',
      before: { permissions: ['project:read'] },
      after: { permissions: ['project:*', 'team:read'] },
    });
    expect((await alice.request('/orgs/acme/roles/observer', { method: 'PATCH', json: {} })).status).toBe(422);
  });

  it('answers a PUT, which the gateway routes as role:update, 405 naming the methods it takes (it updates with PATCH)', async () => {
    await createRole(alice, 'reader', ['audit:read']);
    const put = await alice.request<Problem>('/orgs/acme/roles/reader', { method: 'PUT', json: { permissions: ['*'] } });
    expect(put.status).toBe(405);
    expect(put.headers.get('allow')).toBe('GET, PATCH, DELETE, HEAD');
    expect(put.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect((await put.json()).detail).toBe('/orgs/acme/roles/reader takes GET, PATCH, DELETE, HEAD, not PUT');
    expect(await (await alice.request<{ permissions: string[] }>('/orgs/acme/roles/reader')).json()).toMatchObject({
      permissions: ['audit:read'],
    });
    // A path it does not serve at all is still 404.
    expect((await alice.request('/orgs/acme/roles/reader/extra', { method: 'PUT', json: {} })).status).toBe(404);
  });

  it('refuses to delete a role in use with 409 naming its members and teams, then deletes it once unused', async () => {
    const role = await (await createRole(alice, 'ops', ['project:read'])).json();
    await db()('organization_members').where({ organization_id: acme, user_id: users.dave }).update({ role_id: role.id });
    expect((await alice.request('/orgs/acme/teams/Builders/roles/ops', { method: 'PUT' })).status).toBe(201);

    const refused = await alice.request<Problem>('/orgs/acme/roles/ops', { method: 'DELETE' });
    expect(refused.status).toBe(409);
    expect((await refused.json()).detail).toBe(
      "role 'ops' is in use: the default role of 1 member (dave@example.com); carried by 1 team (Builders); change or remove those first",
    );

    const defaultRole = (await db()<RoleRow>('roles').whereNull('organization_id').where({ name: 'default' }).first('id'))!.id;
    await db()('organization_members').where({ organization_id: acme, user_id: users.dave }).update({ role_id: defaultRole });
    expect((await alice.request('/orgs/acme/teams/Builders/roles/ops', { method: 'DELETE' })).status).toBe(204);
    const etag = (await alice.request('/orgs/acme/roles/ops')).headers.get('etag')!;
    expect((await alice.request('/orgs/acme/roles/ops', { method: 'DELETE', headers: { 'if-match': '"stale"' } })).status).toBe(412);
    expect((await alice.request('/orgs/acme/roles/ops', { method: 'DELETE', headers: { 'if-match': etag } })).status).toBe(204);
    expect((await alice.request('/orgs/acme/roles/ops')).status).toBe(404);
    expect(await db()('directory_events').where({ action: 'role.delete', target_id: role.id })).toHaveLength(1);
  });

  it('replays a POST with the same Idempotency-Key and refuses the key with another body (422)', async () => {
    const headers = { 'idempotency-key': 'create-auditor-1' };
    const first = await createRole(alice, 'auditor', ['audit:read'], headers);
    expect(first.status).toBe(201);
    const replay = await createRole(alice, 'auditor', ['audit:read'], headers);
    expect(replay.status).toBe(201);
    expect(await replay.json()).toEqual(await first.json());
    expect((await createRole(alice, 'auditor-2', ['audit:read'], headers)).status).toBe(422);
    expect(await db()('roles').where({ organization_id: acme }).whereIn('name', ['auditor', 'auditor-2'])).toHaveLength(1);
  });
});

describe('no escalation', () => {
  beforeAll(async () => {
    // bob may create and change roles (through his team), and holds project:*, but not credential:delete.
    expect((await createRole(alice, 'role-maker', ['role:*', 'project:*'])).status).toBe(201);
    expect((await alice.request('/orgs/acme/teams/deployers/roles/role-maker', { method: 'PUT' })).status).toBe(201);
    await waitFor(
      async () => (await bob.request('/orgs/acme/roles', { method: 'POST', json: { name: 'bob-probe', permissions: [] } })).status === 201,
      {
        what: 'bob to hold role:create',
      },
    );
  });

  it('refuses a non-admin holding role:create a role carrying credential:delete, naming exactly the missing permissions (403)', async () => {
    const response = await createRole<Problem>(bob, 'sneaky', ['project:delete', 'credential:delete', 'role:create', 'audit:read']);
    expect(response.status).toBe(403);
    expect((await response.json()).detail).toBe(
      'you cannot grant permissions you do not hold in this organization: audit:read, credential:delete (a role, team role, member role or invitation may carry only permissions you hold)',
    );
    expect(await db()('roles').where({ name: 'sneaky' })).toEqual([]);
    expect(await db()('directory_events').where({ action: 'role.create' }).whereRaw("after->>'name' = 'sneaky'")).toEqual([]);
  });

  it('lets him grant what he holds, and refuses adding what he lacks to an existing role', async () => {
    const created = await createRole(bob, 'project-keeper', ['project:delete', 'project:*', 'role:read']);
    expect(created.status).toBe(201);
    const widened = await bob.request<Problem>('/orgs/acme/roles/project-keeper', {
      method: 'PATCH',
      json: { permissions: ['project:*', '*'] },
    });
    expect(widened.status).toBe(403);
    expect((await widened.json()).detail).toMatch(/hold in this organization: \* \(/);
    // A role already carrying a permission he lacks may still be narrowed or renamed by him.
    expect(
      (await bob.request('/orgs/acme/roles/release-manager', { method: 'PATCH', json: { permissions: ['project:update'] } })).status,
    ).toBe(200);
    expect((await bob.request('/orgs/acme/roles/everything', { method: 'PATCH', json: { name: 'formerly-everything' } })).status).toBe(200);
  });

  it('refuses a plain member any role change by policy first (403 from the gateway)', async () => {
    const response = await createRole<Problem>(dave, 'daves-role', []);
    expect(response.status).toBe(403);
    expect((await response.json()).detail).toContain("missing permission 'role:create' in organization 'acme'");
  });
});
