// RoleStore against a real PostgreSQL: names (taken, reserved by the database constraint),
// built-in roles immutable, resolution like the gateway's, and deletion refused while in use.
import type { Knex } from 'knex';
import { ConflictError, ForbiddenError } from '../base/errors';
import { createTestDatabase, type TestDatabase } from '../../test/support/test-database';
import { waitFor } from '../../test/support/wait-for';
import { RoleStore, toRole, type RoleRow } from './role-store';

let database: TestDatabase;
let db: Knex;
let store: RoleStore;
let builtin: { admin: string; default: string };

beforeAll(async () => {
  database = await createTestDatabase();
  db = database.db;
  store = new RoleStore(db);
  const roles = await db('roles').whereNull('organization_id').select<{ id: string; name: string }[]>('id', 'name');
  builtin = { admin: roles.find((r) => r.name === 'organization-admin')!.id, default: roles.find((r) => r.name === 'default')!.id };
});

afterAll(async () => {
  await database.drop();
});

/** The promise rejects with that domain error and exactly that message. */
async function rejected(promise: Promise<unknown>, type: new (message: string) => Error, message: string): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (thrown: unknown) => thrown,
  );
  expect(error).toBeInstanceOf(type);
  expect((error as Error).message).toBe(message);
}

/** Waits until that many sessions of this database wait for a lock. */
async function waitForLockWaiters(count: number): Promise<void> {
  await waitFor(
    async () => {
      const { rows } = await db.raw<{ rows: { n: number }[] }>(
        "select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'",
      );
      return rows[0]!.n >= count;
    },
    { what: `${count} sessions waiting for a lock` },
  );
}

let counter = 0;
const organization = async () =>
  (
    await db('organizations')
      .insert({ slug: `roles-org-${++counter}`, name: 'org' })
      .returning<{ id: string }[]>('id')
  )[0]!.id;
const user = async (email: string) =>
  (
    await db('users')
      .insert({ subject: `roles-${++counter}`, email })
      .returning<{ id: string }[]>('id')
  )[0]!.id;

describe('RoleStore', () => {
  it('creates an organization role, and refuses a name already taken there with 409', async () => {
    const org = await organization();
    const created = await store.create(org, { name: 'deployer', permissions: ['project:*'] });
    expect(toRole(created)).toEqual({ id: created.id, name: 'deployer', permissions: ['project:*'], builtin: false });
    await rejected(
      store.create(org, { name: 'deployer', permissions: [] }),
      ConflictError,
      "a role named 'deployer' already exists in this organization",
    );
    // Another organization may use the name.
    await expect(store.create(await organization(), { name: 'deployer', permissions: [] })).resolves.toMatchObject({ name: 'deployer' });
  });

  it.each(['default', 'organization-admin', 'Default', 'ORGANIZATION-ADMIN'])(
    'answers the database constraint on the reserved name %s with 409',
    async (name) => {
      const org = await organization();
      await rejected(
        store.create(org, { name, permissions: [] }),
        ConflictError,
        `'${name}' is the name of a built-in role; choose another name`,
      );
      const role = await store.create(org, { name: `x-${counter}`, permissions: [] });
      await expect(store.update(role, { name })).rejects.toBeInstanceOf(ConflictError);
    },
  );

  it('resolves a role like the gateway: the organization’s own by name, built-in ones everywhere, never another organization’s', async () => {
    const org = await organization();
    const other = await organization();
    const mine = await store.create(org, { name: 'auditor', permissions: ['audit:read'] });
    const foreign = await store.create(other, { name: 'foreigner', permissions: ['*'] });
    expect((await store.findUsable(org, 'auditor'))?.id).toBe(mine.id);
    expect((await store.findUsable(org, mine.id))?.id).toBe(mine.id);
    expect((await store.findUsable(org, 'default'))?.id).toBe(builtin.default);
    expect((await store.findUsable(org, builtin.admin))?.id).toBe(builtin.admin);
    expect(await store.findUsable(org, 'foreigner')).toBeUndefined();
    expect(await store.findUsable(org, foreign.id)).toBeUndefined();
    const listed = ((await store.list(org)) as RoleRow[]).map((row) => row.name).sort();
    expect(listed).toEqual(['auditor', 'default', 'organization-admin']);
  });

  it('never changes or deletes a built-in role (403)', async () => {
    const org = await organization();
    const admin = (await store.findUsable(org, 'organization-admin'))!;
    await rejected(
      store.update(admin, { permissions: ['project:read'] }),
      ForbiddenError,
      "the built-in role 'organization-admin' cannot be changed",
    );
    await rejected(store.delete(admin), ForbiddenError, "the built-in role 'organization-admin' cannot be deleted");
    expect((await db<RoleRow>('roles').where({ id: builtin.admin }).first())?.permissions).toEqual(['*']);
  });

  it('refuses to delete a role in use with 409 naming its members, teams and pending invitations', async () => {
    const org = await organization();
    const role = await store.create(org, { name: 'ops', permissions: ['project:read'] });
    const [zed, amy] = [await user('zed@example.com'), await user('amy@example.com')];
    await db('organization_members').insert([
      { organization_id: org, user_id: zed, role_id: role.id },
      { organization_id: org, user_id: amy, role_id: role.id },
    ]);
    const team = (await db('teams').insert({ organization_id: org, name: 'night shift' }).returning<{ id: string }[]>('id'))[0]!.id;
    await db('team_roles').insert({ team_id: team, role_id: role.id });
    await db('invitations').insert({ organization_id: org, email: 'new@example.com', role_id: role.id });

    await rejected(
      store.delete(role),
      ConflictError,
      "role 'ops' is in use: the default role of 2 members (amy@example.com, zed@example.com); carried by 1 team (night shift); offered by 1 pending invitation (new@example.com); change or remove those first",
    );
    expect(await db('roles').where({ id: role.id }).first()).toBeDefined();
  });

  it('names at most five holders of a kind', async () => {
    const org = await organization();
    const role = await store.create(org, { name: 'many', permissions: [] });
    for (let i = 0; i < 7; i++) {
      const team = (
        await db('teams')
          .insert({ organization_id: org, name: `t${i}` })
          .returning<{ id: string }[]>('id')
      )[0]!.id;
      await db('team_roles').insert({ team_id: team, role_id: role.id });
    }
    await expect(store.delete(role)).rejects.toThrow('carried by 7 teams (t0, t1, t2, t3, t4, …)');
  });

  it('deletes a role no one uses, letting go of invitations that are no longer pending', async () => {
    const org = await organization();
    const role = await store.create(org, { name: 'temp', permissions: [] });
    const [accepted] = await db('invitations')
      .insert({ organization_id: org, email: 'a@example.com', role_id: role.id, accepted_at: db.fn.now() })
      .returning<{ id: string }[]>('id');
    const [expired] = await db('invitations')
      .insert({ organization_id: org, email: 'b@example.com', role_id: role.id, expires_at: db.raw("now() - interval '1 day'") })
      .returning<{ id: string }[]>('id');
    await store.delete(role);
    expect(await db('roles').where({ id: role.id }).first()).toBeUndefined();
    expect(await db('invitations').whereIn('id', [accepted!.id, expired!.id]).pluck('role_id')).toEqual([null, null]);
  });

  it('sees a team that took the role while the deletion waited, and refuses (no silent cascade)', async () => {
    const org = await organization();
    const role = await store.create(org, { name: 'contested', permissions: [] });
    const team = (await db('teams').insert({ organization_id: org, name: 'late' }).returning<{ id: string }[]>('id'))[0]!.id;
    const attach = await db.transaction();
    await attach('team_roles').insert({ team_id: team, role_id: role.id });
    const deletion = db.transaction(async (trx) => {
      const roles = new RoleStore(trx);
      await roles.delete((await roles.findUsable(org, 'contested', { lock: 'update' }))!);
    });
    const outcome = deletion.then(
      () => 'deleted',
      (error: Error) => error.message,
    );
    // The deletion is now waiting for the attachment's lock on the role.
    await waitForLockWaiters(1);
    await attach.commit();
    expect(await outcome).toBe("role 'contested' is in use: carried by 1 team (late); change or remove those first");
    expect(await db('team_roles').where({ team_id: team, role_id: role.id }).first()).toBeDefined();
  });
});
