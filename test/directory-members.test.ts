// Members through the running gateway and directory service, with real tokens on a real
// PostgreSQL: listing, role changes (never escalating), removal (with the member's teams),
// leaving, and the last organization-admin, including under parallel requests.
import { expect } from '@jest/globals';
import type { DirectoryEventRow } from '../src/directory-service/directory-events';
import type { Page } from '../src/directory-service/http-semantics';
import type { Member } from '../src/directory-service/member-store';
import type { Directory } from './support/directory-fixtures';
import { startDirectoryStack, type Caller, type DirectoryStack, type Problem } from './support/directory-stack';

let stack: DirectoryStack;
let alice: Caller;
let bob: Caller;
let dave: Caller;
let erin: Caller;
let users: Directory['users'];

const db = () => stack.database.db;
const roleId = async (name: string, organizationId: string | null = null) =>
  (await db()('roles')
    .where({ name })
    .andWhere((where) => {
      if (organizationId === null) where.whereNull('organization_id');
      else where.where({ organization_id: organizationId });
    })
    .first<{ id: string } | undefined>('id'))!.id;

beforeAll(async () => {
  stack = await startDirectoryStack();
  users = stack.directory!.users;
  [alice, bob, dave, erin] = await Promise.all([stack.as('alice'), stack.as('bob'), stack.as('dave'), stack.as('erin')]);
});

afterAll(async () => {
  await stack?.close();
});

describe('listing and reading members', () => {
  it("lists acme's members with their role and teams, page by page", async () => {
    const response = await bob.request<Page<Member>>('/orgs/acme/members?limit=2');
    expect(response.status).toBe(200);
    const page1 = await response.json();
    expect(page1.items).toHaveLength(2);
    const page2 = await (await bob.request<Page<Member>>(`/orgs/acme/members?limit=2&cursor=${page1.next_cursor}`)).json();
    expect(page2.next_cursor).toBeNull();
    const members = [...page1.items, ...page2.items];
    expect(members.map((member) => member.user_id)).toEqual([users.alice, users.bob, users.dave].sort());
    expect(members.find((member) => member.user_id === users.bob)).toEqual({
      user_id: users.bob,
      email: 'bob@example.com',
      display_name: 'bob',
      role: 'default',
      teams: ['deployers'],
      created_at: expect.any(String),
    });
  });

  it('reads one member with an ETag; a user id that is no member is not found', async () => {
    const response = await bob.request(`/orgs/acme/members/${users.alice}`);
    expect(response.status).toBe(200);
    expect(response.headers.get('etag')).toMatch(/^"/);
    expect(await response.json()).toMatchObject({ user_id: users.alice, role: 'organization-admin', teams: [] });
    expect((await bob.request(`/orgs/acme/members/${users.erin}`)).status).toBe(404);
  });
});

describe("changing a member's role", () => {
  it("changes dave's default role to the organization's own role, honouring If-Match", async () => {
    const etag = (await alice.request(`/orgs/acme/members/${users.dave}`)).headers.get('etag')!;
    const changed = await alice.request(`/orgs/acme/members/${users.dave}`, {
      method: 'PATCH',
      headers: { 'if-match': etag },
      json: { role: 'project-creator' },
    });
    expect(changed.status).toBe(200);
    expect(await changed.json()).toMatchObject({ user_id: users.dave, role: 'project-creator' });
    const stale = await alice.request(`/orgs/acme/members/${users.dave}`, {
      method: 'PATCH',
      headers: { 'if-match': etag },
      json: { role: 'default' },
    });
    expect(stale.status).toBe(412);
    const event = await db()<DirectoryEventRow>('directory_events').where({ action: 'member.update', target_id: users.dave }).first();
    expect(event).toMatchObject({
      actor: users.alice,
      organization_slug: 'acme',
      before: expect.objectContaining({ role: 'default' }),
      after: expect.objectContaining({ role: 'project-creator' }),
    });
  });

  it("refuses a role that is neither built-in nor the organization's (422)", async () => {
    await db()('roles').insert({ organization_id: stack.directory!.orgs.globex, name: 'globex-only', permissions: ['project:read'] });
    const response = await alice.request(`/orgs/acme/members/${users.dave}`, { method: 'PATCH', json: { role: 'globex-only' } });
    expect(response.status).toBe(422);
  });

  it('refuses (403) a role carrying a permission the caller does not hold, naming it', async () => {
    // dave may change members, and holds nothing else.
    const manager = (
      await db()('roles')
        .insert({ organization_id: stack.directory!.orgs.acme, name: 'member-manager', permissions: ['member:read', 'member:update'] })
        .returning<{ id: string }[]>('id')
    )[0]!.id;
    await db()('organization_members')
      .where({ organization_id: stack.directory!.orgs.acme, user_id: users.dave })
      .update({ role_id: manager });

    const escalate = await dave.request<Problem>(`/orgs/acme/members/${users.bob}`, {
      method: 'PATCH',
      json: { role: 'organization-admin' },
    });
    expect(escalate.status).toBe(403);
    expect((await escalate.json()).detail).toMatch(/you cannot grant permissions you do not hold in this organization: \*/);
    const sideways = await dave.request<Problem>(`/orgs/acme/members/${users.bob}`, { method: 'PATCH', json: { role: 'project-creator' } });
    expect(sideways.status).toBe(403);
    expect((await sideways.json()).detail).toMatch(/project:create/);
    expect(
      await db()('organization_members').where({ organization_id: stack.directory!.orgs.acme, user_id: users.bob }).pluck('role_id'),
    ).toEqual([await roleId('default')]);

    const same = await dave.request(`/orgs/acme/members/${users.bob}`, { method: 'PATCH', json: { role: 'member-manager' } });
    expect(same.status).toBe(200);
    await db()('organization_members')
      .where({ organization_id: stack.directory!.orgs.acme })
      .whereIn('user_id', [users.bob, users.dave])
      .update({ role_id: await roleId('default') });
  });
});

describe('the last organization-admin', () => {
  it('cannot be demoted, removed or leave (409), and stays', async () => {
    const demote = await alice.request<Problem>(`/orgs/acme/members/${users.alice}`, { method: 'PATCH', json: { role: 'default' } });
    expect(demote.status).toBe(409);
    expect((await demote.json()).detail).toMatch(/cannot demote the last organization-admin/);
    expect((await alice.request(`/orgs/acme/members/${users.alice}`, { method: 'DELETE' })).status).toBe(409);
    const leave = await alice.request<Problem>('/orgs/acme/members/me', { method: 'DELETE' });
    expect(leave.status).toBe(409);
    expect((await leave.json()).detail).toMatch(/cannot leave as the last organization-admin/);
    expect(await (await alice.request(`/orgs/acme/members/${users.alice}`)).json()).toMatchObject({ role: 'organization-admin' });
  });

  it('survives parallel demotions of two admins: exactly one succeeds', async () => {
    // erin holds every permission through a team, so her own requests are never the ones
    // refused; only alice and bob count as organization-admins (their default role).
    const acme = stack.directory!.orgs.acme;
    const owners = (await db()('teams').insert({ organization_id: acme, name: 'owners' }).returning<{ id: string }[]>('id'))[0]!.id;
    await db()('organization_members').insert({ organization_id: acme, user_id: users.erin, role_id: await roleId('default') });
    await db()('team_members').insert({ team_id: owners, user_id: users.erin });
    await db()('team_roles').insert({ team_id: owners, role_id: await roleId('organization-admin') });

    for (let round = 0; round < 3; round += 1) {
      await db()('organization_members')
        .where({ organization_id: acme })
        .whereIn('user_id', [users.alice, users.bob])
        .update({ role_id: await roleId('organization-admin') });
      const statuses = (
        await Promise.all(
          [users.alice, users.bob].map((user) =>
            erin.request(`/orgs/acme/members/${user}`, { method: 'PATCH', json: { role: 'default' } }),
          ),
        )
      ).map((response) => response.status);
      expect(statuses.sort()).toEqual([200, 409]);
      const admins = await db()('organization_members')
        .where({ organization_id: acme, role_id: await roleId('organization-admin') })
        .pluck('user_id');
      expect(admins).toHaveLength(1);
    }
  });

  it('survives two admins leaving in parallel: exactly one leaves', async () => {
    const acme = stack.directory!.orgs.acme;
    await db()('organization_members')
      .where({ organization_id: acme })
      .whereIn('user_id', [users.alice, users.bob])
      .update({ role_id: await roleId('organization-admin') });
    const statuses = (await Promise.all([alice, bob].map((caller) => caller.request('/orgs/acme/members/me', { method: 'DELETE' })))).map(
      (response) => response.status,
    );
    expect(statuses.sort()).toEqual([204, 409]);
    const admins = await db()('organization_members')
      .where({ organization_id: acme, role_id: await roleId('organization-admin') })
      .pluck('user_id');
    expect(admins).toHaveLength(1);
    // Put back whoever left, as an admin too, for the tests below.
    const left = [users.alice, users.bob].find((user) => user !== admins[0])!;
    await db()('organization_members').insert({ organization_id: acme, user_id: left, role_id: await roleId('organization-admin') });
  });
});

describe('removing and leaving', () => {
  it('removes a member together with their teams of that organization, and they lose access', async () => {
    const acme = stack.directory!.orgs.acme;
    await db()('organization_members')
      .where({ organization_id: acme, user_id: users.bob })
      .update({ role_id: await roleId('default') });
    await db()('team_members').insert({ team_id: stack.directory!.teams.builders, user_id: users.bob }).onConflict().ignore();
    const globexTeam = (
      await db()('teams').insert({ organization_id: stack.directory!.orgs.globex, name: 'globex-team' }).returning<{ id: string }[]>('id')
    )[0]!.id;
    await db()('team_members').insert({ team_id: globexTeam, user_id: users.bob });

    const removed = await alice.request(`/orgs/acme/members/${users.bob}`, { method: 'DELETE' });
    expect(removed.status).toBe(204);
    expect(await db()('team_members').where({ user_id: users.bob }).pluck('team_id')).toEqual([globexTeam]);
    expect((await bob.request('/orgs/acme')).status).toBe(403);
    expect(await db()('directory_events').where({ action: 'member.remove', target_id: users.bob }).pluck('actor')).toEqual([users.alice]);
  });

  it('lets any member leave, with their teams', async () => {
    const acme = stack.directory!.orgs.acme;
    await db()('team_members').insert({ team_id: stack.directory!.teams.deployers, user_id: users.dave }).onConflict().ignore();
    const left = await dave.request('/orgs/acme/members/me', { method: 'DELETE' });
    expect(left.status).toBe(204);
    expect(await db()('organization_members').where({ organization_id: acme, user_id: users.dave })).toEqual([]);
    expect(await db()('team_members').where({ user_id: users.dave })).toEqual([]);
    expect((await dave.request('/orgs/globex')).status).toBe(200);
  });
});
