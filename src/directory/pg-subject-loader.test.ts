// PgSubjectLoader against a real PostgreSQL: one test per clause of R4, isolation (R3),
// unknown subjects, failures, and the one-round-trip promise.
import type { Knex } from 'knex';
import { createDatabase } from '../db/database';
import { DependencyError } from '../base/errors';
import type { Inserted } from '../../test/support/rows';
import { createTestDatabase, type TestDatabase } from '../../test/support/test-database';
import { PgSubjectLoader } from './pg-subject-loader';

let database: TestDatabase;
let db: Knex;
let loader: PgSubjectLoader;
let builtin: { admin: string; default: string };

const DEFAULT_PERMISSIONS = ['member:read', 'organization:read', 'project:read', 'team:read'];

beforeAll(async () => {
  database = await createTestDatabase();
  db = database.db;
  loader = new PgSubjectLoader(db);
  const roles = await db('roles').select<{ id: string; name: string }[]>('id', 'name').whereNull('organization_id');
  const idOf = (name: string) => roles.find((role) => role.name === name)!.id;
  builtin = { admin: idOf('organization-admin'), default: idOf('default') };
});

afterAll(async () => {
  await database.drop();
});

let counter = 0;
async function user(email: string | null = null): Promise<{ id: string; sub: string }> {
  const sub = `subject-${++counter}`;
  const [row] = (await db('users').insert({ subject: sub, email }).returning('id')) as Inserted;
  return { id: row.id, sub };
}
async function organization(slug: string): Promise<string> {
  const [row] = (await db('organizations')
    .insert({ slug: `${slug}-${++counter}`, name: slug })
    .returning(['id', 'slug'])) as Inserted<{ id: string; slug: string }>;
  return row.id;
}
async function slugOf(orgId: string): Promise<string> {
  return (await db('organizations').where({ id: orgId }).first<{ slug: string }>('slug')).slug;
}
async function role(orgId: string, name: string, permissions: string[]): Promise<string> {
  const [row] = (await db('roles').insert({ organization_id: orgId, name, permissions }).returning('id')) as Inserted;
  return row.id;
}
async function member(orgId: string, userId: string, roleId: string): Promise<void> {
  await db('organization_members').insert({ organization_id: orgId, user_id: userId, role_id: roleId });
}
async function team(orgId: string, name: string, roleIds: string[] = []): Promise<string> {
  const [row] = (await db('teams').insert({ organization_id: orgId, name }).returning('id')) as Inserted;
  for (const roleId of roleIds) await db('team_roles').insert({ team_id: row.id, role_id: roleId });
  return row.id;
}
async function joinTeam(teamId: string, userId: string): Promise<void> {
  await db('team_members').insert({ team_id: teamId, user_id: userId });
}

describe('PgSubjectLoader', () => {
  it('returns a null subject for a token subject without a users row', async () => {
    expect(await loader.load('nobody-knows-me')).toEqual({ id: null, sub: 'nobody-knows-me', email: null, memberships: {} });
  });

  it('returns a user without organizations with no memberships (R2)', async () => {
    const alice = await user('alice@example.com');
    expect(await loader.load(alice.sub)).toEqual({ id: alice.id, sub: alice.sub, email: 'alice@example.com', memberships: {} });
  });

  it('grants a member their default role', async () => {
    const alice = await user();
    const acme = await organization('acme');
    await member(acme, alice.id, builtin.default);

    const subject = await loader.load(alice.sub);
    expect(subject.memberships).toEqual({
      [await slugOf(acme)]: { role: 'default', teams: [], roles: ['default'], permissions: DEFAULT_PERMISSIONS },
    });
  });

  it('adds the roles of every team of the organization the member belongs to (R4 union)', async () => {
    const alice = await user();
    const acme = await organization('acme');
    const deployer = await role(acme, 'deployer', ['pipeline:run', 'project:read']);
    const auditor = await role(acme, 'auditor', ['credential:read']);
    await member(acme, alice.id, builtin.default);
    await joinTeam(await team(acme, 'ops', [deployer]), alice.id);
    await joinTeam(await team(acme, 'audit', [auditor, deployer]), alice.id);
    await team(acme, 'not-mine', [builtin.admin]);

    const subject = await loader.load(alice.sub);
    expect(subject.memberships[await slugOf(acme)]).toEqual({
      role: 'default',
      teams: ['audit', 'ops'],
      roles: ['auditor', 'default', 'deployer'],
      permissions: ['credential:read', 'member:read', 'organization:read', 'pipeline:run', 'project:read', 'team:read'],
    });
  });

  it('counts built-in roles given to a team', async () => {
    const alice = await user();
    const acme = await organization('acme');
    await member(acme, alice.id, builtin.default);
    await joinTeam(await team(acme, 'owners', [builtin.admin]), alice.id);

    const membership = (await loader.load(alice.sub)).memberships[await slugOf(acme)];
    expect(membership?.roles).toEqual(['default', 'organization-admin']);
    expect(membership?.permissions).toEqual(['*', ...DEFAULT_PERMISSIONS]);
  });

  it('grants nothing through a team when the user is no longer a member of its organization', async () => {
    const alice = await user();
    const acme = await organization('acme');
    await joinTeam(await team(acme, 'ops', [builtin.admin]), alice.id);

    expect((await loader.load(alice.sub)).memberships).toEqual({});
  });

  it('ignores a team role that belongs to another organization', async () => {
    const alice = await user();
    const acme = await organization('acme');
    const globex = await organization('globex');
    const foreign = await role(globex, 'globex-admin', ['*']);
    await member(acme, alice.id, builtin.default);
    await joinTeam(await team(acme, 'ops', [foreign]), alice.id);

    expect((await loader.load(alice.sub)).memberships[await slugOf(acme)]).toEqual({
      role: 'default',
      teams: ['ops'],
      roles: ['default'],
      permissions: DEFAULT_PERMISSIONS,
    });
  });

  it('ignores a default role that belongs to another organization', async () => {
    const alice = await user();
    const acme = await organization('acme');
    const globex = await organization('globex');
    const foreign = await role(globex, 'globex-admin', ['*']);
    await member(acme, alice.id, foreign);

    expect((await loader.load(alice.sub)).memberships[await slugOf(acme)]).toEqual({ role: '', teams: [], roles: [], permissions: [] });
  });

  it('counts a role without permissions among the roles but adds no permission', async () => {
    const alice = await user();
    const acme = await organization('acme');
    const observer = await role(acme, 'observer', []);
    await member(acme, alice.id, observer);

    expect((await loader.load(alice.sub)).memberships[await slugOf(acme)]).toEqual({
      role: 'observer',
      teams: [],
      roles: ['observer'],
      permissions: [],
    });
  });

  it('keeps organizations isolated: teams and roles of one grant nothing in another (R3)', async () => {
    const alice = await user();
    const acme = await organization('acme');
    const globex = await organization('globex');
    const deployer = await role(acme, 'deployer', ['pipeline:run', 'credential:create']);
    await member(acme, alice.id, builtin.default);
    await member(globex, alice.id, builtin.default);
    await joinTeam(await team(acme, 'ops', [deployer, builtin.admin]), alice.id);
    await team(globex, 'ops');

    const subject = await loader.load(alice.sub);
    expect(subject.memberships).toEqual({
      [await slugOf(acme)]: {
        role: 'default',
        teams: ['ops'],
        roles: ['default', 'deployer', 'organization-admin'],
        permissions: ['*', 'credential:create', ...DEFAULT_PERMISSIONS, 'pipeline:run'].sort(),
      },
      [await slugOf(globex)]: { role: 'default', teams: [], roles: ['default'], permissions: DEFAULT_PERMISSIONS },
    });
  });

  it("does not show another user's memberships", async () => {
    const alice = await user();
    const bob = await user();
    const acme = await organization('acme');
    await member(acme, bob.id, builtin.admin);

    expect((await loader.load(alice.sub)).memberships).toEqual({});
  });

  it("sorts names in code-point order, as JavaScript does, whatever the columns' collation", async () => {
    // An ICU collation sorts 'alpha' < 'beta' < 'Zulu'; code-point order puts 'Zulu' first.
    const collate = (collation: string) =>
      Promise.all(['teams', 'roles'].map((table) => db.raw(`alter table ${table} alter column name type text collate "${collation}"`)));
    await collate('en-US-x-icu');
    try {
      const alice = await user();
      const acme = await organization('acme');
      const names = ['beta', 'Zulu', 'alpha', 'Émile', '_infra'];
      const roleIds = await Promise.all(names.map((name) => role(acme, name, [`${name}:read`])));
      await member(acme, alice.id, builtin.default);
      for (const name of names) await joinTeam(await team(acme, name, roleIds), alice.id);

      const membership = (await loader.load(alice.sub)).memberships[await slugOf(acme)];
      expect(membership?.teams).toEqual([...names].sort());
      expect(membership?.roles).toEqual([...names, 'default'].sort());
      expect(membership?.permissions).toEqual([...names.map((name) => `${name}:read`), ...DEFAULT_PERMISSIONS].sort());
    } finally {
      await collate('default');
    }
  });

  it('loads the subject in a single query', async () => {
    const alice = await user();
    const acme = await organization('acme');
    const globex = await organization('globex');
    await member(acme, alice.id, builtin.default);
    await member(globex, alice.id, builtin.admin);
    await joinTeam(await team(acme, 'ops', [builtin.admin]), alice.id);

    const queries: string[] = [];
    const onQuery = (query: { sql: string }) => queries.push(query.sql);
    db.on('query', onQuery);
    try {
      await loader.load(alice.sub);
    } finally {
      db.off('query', onQuery);
    }
    expect(queries).toHaveLength(1);
  });

  it('reports a failing query as an unavailable dependency without leaking SQL', async () => {
    const trx = await db.transaction();
    let error: unknown;
    try {
      await trx.raw('alter table team_roles rename to team_roles_gone');
      error = await new PgSubjectLoader(trx).load('anyone').catch((thrown: unknown) => thrown);
    } finally {
      await trx.rollback();
    }

    expect(error).toBeInstanceOf(DependencyError);
    expect((error as Error).message).not.toMatch(/select|team_roles|subject_user/i);
    expect((error as Error).cause).toBeDefined();
  });

  it('reports an unreachable database as an unavailable dependency', async () => {
    const unreachable = createDatabase({ url: 'postgres://portcullis@127.0.0.1:1/none', acquireTimeoutMs: 1000 });
    jest.spyOn(console, 'log').mockImplementation(() => undefined); // knex logs the refused connection
    try {
      await expect(new PgSubjectLoader(unreachable).load('anyone')).rejects.toBeInstanceOf(DependencyError);
    } finally {
      await unreachable.destroy();
      jest.restoreAllMocks();
    }
  });
});
