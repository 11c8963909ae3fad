// Teams through the running gateway and directory service, with real tokens on a real
// PostgreSQL: a role attached to a team reaches its members at once, only the organization's
// members join its teams, only built-in or the organization's roles attach, names are unique
// and addressable, and joining a team or attaching a role never escalates the caller.
import { expect } from '@jest/globals';
import type { Page } from '../src/directory-service/http-semantics';
import type { Member } from '../src/directory-service/member-store';
import type { Role, RoleRow } from '../src/directory-service/role-store';
import type { Team } from '../src/directory-service/team-store';
import type { Directory } from './support/directory-fixtures';
import { startDirectoryStack, type Caller, type DirectoryStack, type Problem } from './support/directory-stack';
import { waitFor } from './support/wait-for';

let stack: DirectoryStack;
let alice: Caller;
let bob: Caller;
let dave: Caller;
let users: Directory['users'];

const db = () => stack.database.db;

beforeAll(async () => {
  stack = await startDirectoryStack();
  users = stack.directory!.users;
  [alice, bob, dave] = await Promise.all([stack.as('alice'), stack.as('bob'), stack.as('dave')]);
});

afterAll(async () => {
  await stack?.close();
});

describe('a role attached to a team', () => {
  it('alice attaches a role to a team and bob, a team member, gains its permission at once through the gateway', async () => {
    expect(
      (await alice.request('/orgs/acme/roles', { method: 'POST', json: { name: 'credential-reader', permissions: ['credential:read'] } }))
        .status,
    ).toBe(201);
    expect((await bob.request('/orgs/acme/credentials')).status).toBe(403);

    const attached = await alice.request('/orgs/acme/teams/deployers/roles/credential-reader', { method: 'PUT' });
    expect(attached.status).toBe(201);
    expect(await attached.json()).toEqual({
      id: expect.any(String),
      name: 'credential-reader',
      permissions: ['credential:read'],
      builtin: false,
    });
    const started = Date.now();
    await waitFor(async () => (await bob.request('/orgs/acme/credentials')).status === 200, {
      timeoutMs: 2000,
      what: 'bob to read credentials',
    });
    expect(Date.now() - started).toBeLessThan(2000);

    const again = await alice.request('/orgs/acme/teams/deployers/roles/credential-reader', { method: 'PUT' });
    expect(again.status).toBe(200);
    const team = await (await alice.request('/orgs/acme/teams/deployers')).json();
    expect(team).toEqual({
      id: stack.directory!.teams.deployers,
      name: 'deployers',
      roles: ['credential-reader', 'project-creator'],
      member_count: 1,
    });
    const roles = await (await bob.request<Page<Role>>('/orgs/acme/teams/deployers/roles')).json();
    expect(roles.items.map((role) => role.name)).toEqual(['credential-reader', 'project-creator']);
    const events = await db()('directory_events').where({ action: 'team_role.attach' });
    expect(events).toEqual([
      expect.objectContaining({ actor: users.alice, organization_slug: 'acme', target_type: 'team_role', before: null }),
    ]);

    expect((await alice.request('/orgs/acme/teams/deployers/roles/credential-reader', { method: 'DELETE' })).status).toBe(204);
    await waitFor(async () => (await bob.request('/orgs/acme/credentials')).status === 403, {
      timeoutMs: 2000,
      what: 'bob to lose credential:read',
    });
    expect((await alice.request('/orgs/acme/teams/deployers/roles/credential-reader', { method: 'DELETE' })).status).toBe(404);
  });

  it('attaches built-in roles, by name or id', async () => {
    const defaultId = (await db()<RoleRow>('roles').whereNull('organization_id').where({ name: 'default' }).first('id'))!.id;
    const response = await alice.request(`/orgs/acme/teams/Builders/roles/${defaultId}`, { method: 'PUT' });
    expect(response.status).toBe(201);
    expect(await response.json()).toMatchObject({ name: 'default', builtin: true });
    expect((await alice.request('/orgs/acme/teams/Builders/roles/default', { method: 'PUT' })).status).toBe(200);
  });

  it("refuses another organization's role, by name or id (404), and attaches nothing", async () => {
    const [foreign] = await db()('roles')
      .insert({ organization_id: stack.directory!.orgs.globex, name: 'globex-only', permissions: ['*'] })
      .returning<{ id: string }[]>('id');
    for (const ref of ['globex-only', foreign!.id]) {
      const response = await alice.request<Problem>(`/orgs/acme/teams/deployers/roles/${ref}`, { method: 'PUT' });
      expect(response.status).toBe(404);
      expect((await response.json()).detail).toContain(`role '${ref}' not found in organization 'acme'`);
    }
    expect(await db()('team_roles').where({ role_id: foreign!.id })).toEqual([]);
  });
});

describe('team members', () => {
  it('adds a member of the organization once, lists, and removes them', async () => {
    const path = `/orgs/acme/teams/Builders/members/${users.dave}`;
    // If-Match on a PUT that would create: nothing there can match (412), nothing is added.
    expect((await alice.request(path, { method: 'PUT', headers: { 'if-match': '*' } })).status).toBe(412);
    expect(await db()('team_members').where({ user_id: users.dave })).toEqual([]);
    const added = await alice.request(path, { method: 'PUT' });
    expect(added.status).toBe(201);
    const etag = added.headers.get('etag');
    expect(await added.json()).toEqual({ user_id: users.dave, email: 'dave@example.com', display_name: 'dave' });
    const again = await alice.request(path, { method: 'PUT', headers: { 'if-match': etag! } });
    expect(again.status).toBe(200);
    expect(again.headers.get('etag')).toBe(etag);
    expect((await alice.request(path, { method: 'PUT', headers: { 'if-match': '"stale"' } })).status).toBe(412);

    const members = await (await dave.request('/orgs/acme/teams/Builders/members')).json();
    expect(members).toEqual({ items: [{ user_id: users.dave, email: 'dave@example.com', display_name: 'dave' }], next_cursor: null });
    const one = await dave.request(path);
    expect(one.headers.get('etag')).toBe(etag);
    expect(await one.json()).toEqual({ user_id: users.dave, email: 'dave@example.com', display_name: 'dave' });
    const member = await (await alice.request<Member>(`/orgs/acme/members/${users.dave}`)).json();
    expect(member.teams).toContain('Builders');

    expect((await alice.request(path, { method: 'DELETE', headers: { 'if-match': '"stale"' } })).status).toBe(412);
    expect((await alice.request(path, { method: 'DELETE', headers: { 'if-match': etag! } })).status).toBe(204);
    expect((await alice.request(path, { method: 'DELETE' })).status).toBe(404);
    expect(await db()('team_members').where({ user_id: users.dave })).toEqual([]);
    expect((await db()('directory_events').whereIn('action', ['team_member.add', 'team_member.remove']).pluck('action')).sort()).toEqual([
      'team_member.add',
      'team_member.remove',
    ]);
  });

  it('does not let a non-member of the organization join its teams: the gateway answers 404 (R7), nothing is written', async () => {
    const response = await alice.request<Problem>(`/orgs/acme/teams/Builders/members/${users.carol}`, { method: 'PUT' });
    expect(response.status).toBe(404);
    expect((await response.json()).detail).toContain(`user '${users.carol}' is not a member of organization 'acme'`);
    expect(await db()('team_members').where({ user_id: users.carol })).toEqual([]);
  });

  it('answers 422 itself for a non-member when the route leaves {user} to the upstream', async () => {
    const unchecked = await startDirectoryStack({
      gateway: {
        routes: [
          {
            method: 'PUT',
            path: '/orgs/{org}/teams/{team}/members/{user}',
            action: 'team:update',
            service: 'organizations',
            resource: 'team',
            checked_by: { user: 'upstream' },
          },
        ],
      },
    });
    try {
      const admin = await unchecked.as('alice');
      const { carol } = unchecked.directory!.users;
      const response = await admin.request<Problem>(`/orgs/acme/teams/Builders/members/${carol}`, { method: 'PUT' });
      expect(response.status).toBe(422);
      expect((await response.json()).detail).toBe(`user '${carol}' is not a member of this organization; only its members join its teams`);
      expect(await unchecked.database.db('team_members').where({ user_id: carol })).toEqual([]);
    } finally {
      await unchecked.close();
    }
  });
});

describe('team names', () => {
  it('creates, reads by name or id, renames with If-Match, and deletes a team', async () => {
    const created = await alice.request<Team>('/orgs/acme/teams', { method: 'POST', json: { name: 'Night Shift' } });
    expect(created.status).toBe(201);
    const team = await created.json();
    expect(team).toEqual({ id: expect.any(String), name: 'Night Shift', roles: [], member_count: 0 });
    expect(created.headers.get('location')).toBe(`/orgs/acme/teams/${team.id}`);
    const byName = await alice.request('/orgs/acme/teams/Night%20Shift');
    expect(await byName.json()).toEqual(team);
    expect(byName.headers.get('etag')).toBe(created.headers.get('etag'));
    expect(await (await alice.request(`/orgs/acme/teams/${team.id}`)).json()).toEqual(team);

    const stale = await alice.request('/orgs/acme/teams/Night%20Shift', {
      method: 'PATCH',
      json: { name: 'Day Shift' },
      headers: { 'if-match': '"stale"' },
    });
    expect(stale.status).toBe(412);
    const renamed = await alice.request('/orgs/acme/teams/Night%20Shift', {
      method: 'PATCH',
      json: { name: 'Day Shift' },
      headers: { 'if-match': created.headers.get('etag')! },
    });
    expect(renamed.status).toBe(200);
    expect(await renamed.json()).toEqual({ ...team, name: 'Day Shift' });
    expect((await alice.request('/orgs/acme/teams/Night%20Shift')).status).toBe(404);

    expect((await alice.request(`/orgs/acme/teams/${team.id}`, { method: 'DELETE' })).status).toBe(204);
    expect((await alice.request('/orgs/acme/teams/Day%20Shift')).status).toBe(404);
  });

  it('keeps names unique in the organization (409) but not across organizations', async () => {
    const taken = await alice.request<Problem>('/orgs/acme/teams', { method: 'POST', json: { name: 'deployers' } });
    expect(taken.status).toBe(409);
    expect((await taken.json()).detail).toBe("a team named 'deployers' already exists in this organization");
    expect((await dave.request('/orgs/globex/teams', { method: 'POST', json: { name: 'deployers' } })).status).toBe(201);
    expect((await alice.request('/orgs/acme/teams/Builders', { method: 'PATCH', json: { name: 'core team' } })).status).toBe(409);
  });

  it.each([
    ['empty', ''],
    ['101 characters', 'x'.repeat(101)],
    ['a slash', 'ops/oncall'],
    ['a control character', 'ops\tteam'],
    ['a surrounding space', ' ops'],
    ['the shape of an id', '0b5c4a8e-9a43-4a4c-9d39-2a1b3c4d5e6f'],
  ])('refuses a name that is %s (422)', async (_what, name) => {
    const response = await alice.request('/orgs/acme/teams', { method: 'POST', json: { name } });
    expect(response.status).toBe(422);
    expect(response.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  });

  it('accepts a 100-character name and lists teams page by page, by name', async () => {
    expect((await alice.request('/orgs/acme/teams', { method: 'POST', json: { name: 'y'.repeat(100) } })).status).toBe(201);
    const names: string[] = [];
    let cursor: string | null = null;
    do {
      const page = await (await bob.request<Page<Team>>(`/orgs/acme/teams?limit=2${cursor ? `&cursor=${cursor}` : ''}`)).json();
      expect(page.items.length).toBeLessThanOrEqual(2);
      names.push(...page.items.map((team) => team.name));
      cursor = page.next_cursor;
    } while (cursor !== null);
    const all = await db()('teams').where({ organization_id: stack.directory!.orgs.acme }).orderBy(['name', 'id']).pluck<string[]>('name');
    expect(names).toEqual(all);
  });
});

describe('racing writes', () => {
  it('creates a team once under parallel requests for one name (one 201, the rest 409)', async () => {
    const responses = await Promise.all(
      Array.from({ length: 6 }, () => alice.request('/orgs/acme/teams', { method: 'POST', json: { name: 'race' } })),
    );
    expect(responses.map((response) => response.status).sort()).toEqual([201, 409, 409, 409, 409, 409]);
    expect(await db()('teams').where({ organization_id: stack.directory!.orgs.acme, name: 'race' })).toHaveLength(1);
  });

  it('adds a member once under parallel PUTs (one 201, the rest 200) and records one event', async () => {
    const responses = await Promise.all(
      Array.from({ length: 6 }, () => alice.request(`/orgs/acme/teams/race/members/${users.bob}`, { method: 'PUT' })),
    );
    expect(responses.map((response) => response.status).sort()).toEqual([200, 200, 200, 200, 200, 201]);
    const added = await db()('directory_events').where({ action: 'team_member.add' }).whereRaw("after->>'team' = 'race'");
    expect(added).toHaveLength(1);
  });
});

describe('no escalation through teams', () => {
  it('refuses a team manager who lacks * to join an admin team or attach organization-admin (403 naming *)', async () => {
    expect(
      (await alice.request('/orgs/acme/roles', { method: 'POST', json: { name: 'team-manager', permissions: ['team:*'] } })).status,
    ).toBe(201);
    expect((await alice.request('/orgs/acme/teams', { method: 'POST', json: { name: 'admins' } })).status).toBe(201);
    expect((await alice.request('/orgs/acme/teams/admins/roles/organization-admin', { method: 'PUT' })).status).toBe(201);
    expect((await alice.request('/orgs/acme/teams/deployers/roles/team-manager', { method: 'PUT' })).status).toBe(201);
    await waitFor(async () => (await bob.request('/orgs/acme/teams', { method: 'POST', json: { name: 'bobs-team' } })).status === 201, {
      what: 'bob to hold team:*',
    });

    const join = await bob.request<Problem>(`/orgs/acme/teams/admins/members/${users.bob}`, { method: 'PUT' });
    expect(join.status).toBe(403);
    expect((await join.json()).detail).toMatch(/^you cannot grant permissions you do not hold in this organization: \* \(/);
    const attach = await bob.request<Problem>('/orgs/acme/teams/bobs-team/roles/organization-admin', { method: 'PUT' });
    expect(attach.status).toBe(403);
    expect((await attach.json()).detail).toMatch(/hold in this organization: \* \(/);
    expect(await db()('team_members').join('teams', 'teams.id', 'team_members.team_id').where({ 'teams.name': 'admins' })).toEqual([]);

    // What bob holds, he may hand out.
    expect((await bob.request('/orgs/acme/teams/bobs-team/roles/project-creator', { method: 'PUT' })).status).toBe(201);
    expect((await bob.request(`/orgs/acme/teams/bobs-team/members/${users.dave}`, { method: 'PUT' })).status).toBe(201);
  });
});
