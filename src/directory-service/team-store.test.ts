// TeamStore against a real PostgreSQL: unique names, members only from the organization
// (race-safe against a removal), roles only built-in or the organization's own.
import { expect } from '@jest/globals';
import type { Knex } from 'knex';
import { ConflictError, InputError } from '../base/errors';
import { createTestDatabase, type TestDatabase } from '../../test/support/test-database';
import { waitFor } from '../../test/support/wait-for';
import { RoleStore, type RoleRow } from './role-store';
import { TeamStore } from './team-store';

let database: TestDatabase;
let db: Knex;
let teams: TeamStore;
let roles: RoleStore;
let defaultRole: string;

beforeAll(async () => {
  database = await createTestDatabase();
  db = database.db;
  teams = new TeamStore(db);
  roles = new RoleStore(db);
  defaultRole = (await db<RoleRow>('roles').whereNull('organization_id').where({ name: 'default' }).first('id'))!.id;
});

afterAll(async () => {
  await database.drop();
});

async function rejected(
  promise: Promise<unknown>,
  type: abstract new (...args: never[]) => Error,
  message: string,
  status?: number,
): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (thrown: unknown) => thrown,
  );
  expect(error).toBeInstanceOf(type);
  expect((error as Error).message).toBe(message);
  if (status !== undefined) expect((error as { status: number }).status).toBe(status);
}

let counter = 0;
const organization = async () =>
  (
    await db('organizations')
      .insert({ slug: `teams-org-${++counter}`, name: 'org' })
      .returning<{ id: string }[]>('id')
  )[0]!.id;
const member = async (organizationId: string) => {
  const id = (
    await db('users')
      .insert({ subject: `teams-${++counter}`, email: `u${counter}@example.com`, display_name: `U${counter}` })
      .returning<{ id: string }[]>('id')
  )[0]!.id;
  await db('organization_members').insert({ organization_id: organizationId, user_id: id, role_id: defaultRole });
  return id;
};

describe('TeamStore', () => {
  it('creates teams with names unique per organization (409), found by exact name or id', async () => {
    const org = await organization();
    const team = await teams.create(org, 'Core Team');
    await rejected(teams.create(org, 'Core Team'), ConflictError, "a team named 'Core Team' already exists in this organization");
    await expect(teams.create(await organization(), 'Core Team')).resolves.toMatchObject({ name: 'Core Team' });
    expect((await teams.find(org, 'Core Team'))?.id).toBe(team.id);
    expect((await teams.find(org, team.id))?.id).toBe(team.id);
    expect(await teams.find(org, 'core team')).toBeUndefined();
    expect(await teams.find(await organization(), team.id)).toBeUndefined();
    const other = await teams.create(org, 'other');
    await rejected(teams.rename(other, 'Core Team'), ConflictError, "a team named 'Core Team' already exists in this organization");
    expect((await teams.rename(other, 'renamed')).name).toBe('renamed');
  });

  it('lets only members of the organization join its teams (422), once', async () => {
    const org = await organization();
    const team = await teams.create(org, 'ops');
    const insider = await member(org);
    const outsider = await member(await organization());
    expect(await teams.addMember(team, insider)).toBe(true);
    expect(await teams.addMember(team, insider)).toBe(false);
    await rejected(
      teams.addMember(team, outsider),
      InputError,
      `user '${outsider}' is not a member of this organization; only its members join its teams`,
      422,
    );
    await rejected(
      teams.addMember(team, 'not-a-uuid'),
      InputError,
      "user 'not-a-uuid' is not a member of this organization; only its members join its teams",
      422,
    );
    expect(await teams.members(team)).toEqual([{ user_id: insider, email: expect.any(String), display_name: expect.any(String) }]);
    expect(await teams.removeMember(team, insider)).toBe(true);
    expect(await teams.removeMember(team, insider)).toBe(false);
  });

  it('waits for a removal from the organization in progress, then refuses the user (422): no team membership outlives the membership', async () => {
    const org = await organization();
    const team = await teams.create(org, 'racing');
    const user = await member(org);
    // A removal as the member service does it: the membership and the user's teams of that organization.
    const removal = await db.transaction();
    await removal('organization_members').where({ organization_id: org, user_id: user }).delete();
    await removal('team_members')
      .whereIn('team_id', removal('teams').where({ organization_id: org }).select('id'))
      .where({ user_id: user })
      .delete();
    const adding = db.transaction((trx) => new TeamStore(trx).addMember(team, user));
    const outcome = adding.then(
      () => 'added',
      (error: InputError) => error.status,
    );
    await waitFor(
      async () =>
        (
          await db.raw<{ rows: { n: number }[] }>(
            "select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'",
          )
        ).rows[0]!.n >= 1,
      {
        what: 'the addition to wait for the removal',
      },
    );
    await removal.commit();
    expect(await outcome).toBe(422);
    expect(await db('team_members').where({ user_id: user })).toEqual([]);
  });

  it('attaches built-in roles and the organization’s own, never another organization’s (422)', async () => {
    const org = await organization();
    const other = await organization();
    const team = await teams.create(org, 'deployers');
    const own = await roles.create(org, { name: 'deployer', permissions: ['project:*'] });
    const foreign = await roles.create(other, { name: 'spy', permissions: ['*'] });
    expect(await teams.attachRole(team, own)).toBe(true);
    expect(await teams.attachRole(team, own)).toBe(false);
    expect(await teams.attachRole(team, (await roles.findUsable(org, 'default'))!)).toBe(true);
    await rejected(
      teams.attachRole(team, foreign),
      InputError,
      "role 'spy' belongs to another organization; only built-in roles or this organization's attach",
      422,
    );
    await teams.addMember(team, await member(org));
    expect(await teams.representation(team.id)).toEqual({
      id: team.id,
      name: 'deployers',
      roles: ['default', 'deployer'],
      member_count: 1,
    });
    expect(((await teams.roles(team)) as RoleRow[]).map((row) => row.name).sort()).toEqual(['default', 'deployer']);
    expect(await teams.detachRole(team, own)).toBe(true);
    expect(await teams.detachRole(team, own)).toBe(false);
  });

  it('shows only the roles that count (R4) even when SQL attached a foreign one', async () => {
    const org = await organization();
    const team = await teams.create(org, 'mixed');
    const foreign = await roles.create(await organization(), { name: 'foreign', permissions: ['*'] });
    await db('team_roles').insert({ team_id: team.id, role_id: foreign.id });
    expect(await teams.representation(team.id)).toMatchObject({ roles: [] });
    expect(await teams.roles(team)).toEqual([]);
  });

  it('deletes a team with its memberships and role attachments', async () => {
    const org = await organization();
    const team = await teams.create(org, 'gone');
    await teams.addMember(team, await member(org));
    await teams.attachRole(team, (await roles.findUsable(org, 'default'))!);
    await teams.delete(team);
    expect(await db('team_members').where({ team_id: team.id })).toEqual([]);
    expect(await db('team_roles').where({ team_id: team.id })).toEqual([]);
  });
});
