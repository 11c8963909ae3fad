// Two whole gateways with warm caches on one database, and another service changing the
// directory with plain SQL: both must enforce every change within 1 s, also after their
// notification connections were killed. Warm requests must not touch the directory.
import { seedDirectory, type Directory } from './support/directory-fixtures';
import { startHarness, type Harness } from './support/gateway-harness';
import { listenerPids } from './support/listener-backends';
import type { Inserted, MembershipRow } from './support/rows';
import { createTestDatabase, type TestDatabase } from './support/test-database';
import { waitFor } from './support/wait-for';

const FRESH_WITHIN_MS = 1000;

let database: TestDatabase;
let dir: Directory;
let gateways: Harness[];

beforeAll(async () => {
  database = await createTestDatabase();
  dir = await seedDirectory(database.db);
  gateways = [await startHarness({}, { database }), await startHarness({}, { database })];
});

afterAll(async () => {
  await Promise.all((gateways ?? []).map((gateway) => gateway.close()));
  await database?.drop();
});

const db = () => database.db;

// One token per caller and gateway, as a client would reuse it (so the token cache is warm too).
const tokens = new Map<string, Promise<string>>();
function tokenOf(gateway: Harness, user: string): Promise<string> {
  const key = `${gateways.indexOf(gateway)}:${user}`;
  if (!tokens.has(key)) tokens.set(key, gateway.tokens.sign(`${user}|sub`));
  return tokens.get(key)!;
}

async function statusOf(gateway: Harness, user: string, method: string, path: string): Promise<number> {
  const res = await gateway.request(path, { method, token: await tokenOf(gateway, user), ...(method === 'GET' ? {} : { body: '{}' }) });
  await res.arrayBuffer();
  return res.status;
}

/** Asks every gateway until it answers `status`; fails if one still does not after 1 s. */
async function expectEverywhereWithin(user: string, method: string, path: string, status: number): Promise<void> {
  const started = Date.now();
  await Promise.all(
    gateways.map(async (gateway, index) => {
      let last = await statusOf(gateway, user, method, path);
      while (last !== status && Date.now() - started < FRESH_WITHIN_MS) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        last = await statusOf(gateway, user, method, path);
      }
      expect({ gateway: index, user, method, path, status: last }).toEqual({ gateway: index, user, method, path, status });
    }),
  );
}

/** Both gateways answer `status` now, and so their caches hold the subject and facts. */
async function warm(user: string, method: string, path: string, status: number): Promise<void> {
  for (const gateway of gateways) {
    expect(await statusOf(gateway, user, method, path)).toBe(status);
    expect(await statusOf(gateway, user, method, path)).toBe(status);
  }
}

describe('with warm caches', () => {
  it('answers without asking the directory: requests pass while every directory table is locked', async () => {
    await warm('alice', 'GET', '/orgs/acme/projects/api', 200);
    const locker = await db().transaction();
    try {
      await locker.raw(
        'lock table users, organizations, organization_members, teams, team_members, team_roles, roles, projects, invitations in access exclusive mode',
      );
      const started = Date.now();
      for (const gateway of gateways) expect(await statusOf(gateway, 'alice', 'GET', '/orgs/acme/projects/api')).toBe(200);
      expect(Date.now() - started).toBeLessThan(500);
    } finally {
      await locker.rollback();
    }
  });
});

describe('the caches are observable', () => {
  it('report hits, misses and entries of the token, subject and facts caches on /metrics', async () => {
    await warm('alice', 'GET', '/orgs/acme/projects/web', 200);
    const text = await (await fetch(`${gateways[0]!.gateway.adminUrl}/metrics`)).text();
    const value = (metric: string, cache: string) => Number(new RegExp(`^${metric}\\{cache="${cache}"\\} (\\d+)`, 'm').exec(text)?.[1]);
    for (const cache of ['tokens', 'subjects', 'facts']) {
      expect({ cache, hits: value('portcullis_cache_hits', cache) > 0 }).toEqual({ cache, hits: true });
      expect({ cache, entries: value('portcullis_cache_entries', cache) > 0 }).toEqual({ cache, entries: true });
      expect(value('portcullis_cache_misses', cache)).toBeGreaterThan(0);
    }
  });
});

describe('a change written by another service is enforced by every instance within 1 s', () => {
  it('removing a member from the organization', async () => {
    await warm('bob', 'GET', '/orgs/acme', 200);
    const membership = await db()('organization_members')
      .where({ organization_id: dir.orgs.acme, user_id: dir.users.bob })
      .first<MembershipRow>();
    await db()('organization_members').where({ organization_id: dir.orgs.acme, user_id: dir.users.bob }).delete();
    await expectEverywhereWithin('bob', 'GET', '/orgs/acme', 403);
    await db()('organization_members').insert(membership);
    await expectEverywhereWithin('bob', 'GET', '/orgs/acme', 200);
  });

  it('removing a member in replica mode (logical replication, pg_restore --disable-triggers)', async () => {
    await warm('bob', 'GET', '/orgs/acme', 200);
    const membership = await db()('organization_members')
      .where({ organization_id: dir.orgs.acme, user_id: dir.users.bob })
      .first<MembershipRow>();
    await db().transaction(async (trx) => {
      await trx.raw('set local session_replication_role = replica');
      await trx('organization_members').where({ organization_id: dir.orgs.acme, user_id: dir.users.bob }).delete();
    });
    await expectEverywhereWithin('bob', 'GET', '/orgs/acme', 403);
    await db()('organization_members').insert(membership);
    await expectEverywhereWithin('bob', 'GET', '/orgs/acme', 200);
  });

  it('taking a role away from a team, and giving it back', async () => {
    await warm('bob', 'POST', '/orgs/acme/projects', 200);
    await db()('team_roles').where({ team_id: dir.teams.deployers, role_id: dir.roles.projectCreator }).delete();
    await expectEverywhereWithin('bob', 'POST', '/orgs/acme/projects', 403);
    await db()('team_roles').insert({ team_id: dir.teams.deployers, role_id: dir.roles.projectCreator });
    await expectEverywhereWithin('bob', 'POST', '/orgs/acme/projects', 200);
  });

  it('adding a member to a team', async () => {
    await warm('dave', 'POST', '/orgs/acme/projects', 403);
    await db()('team_members').insert({ team_id: dir.teams.deployers, user_id: dir.users.dave });
    await expectEverywhereWithin('dave', 'POST', '/orgs/acme/projects', 200);
    await db()('team_members').where({ team_id: dir.teams.deployers, user_id: dir.users.dave }).delete();
    await expectEverywhereWithin('dave', 'POST', '/orgs/acme/projects', 403);
  });

  it('changing the permissions of an organization role', async () => {
    await warm('bob', 'POST', '/orgs/acme/projects', 200);
    await db()('roles')
      .where({ id: dir.roles.projectCreator })
      .update({ permissions: ['pipeline:read'] });
    await expectEverywhereWithin('bob', 'POST', '/orgs/acme/projects', 403);
    await db()('roles')
      .where({ id: dir.roles.projectCreator })
      .update({ permissions: ['project:create'] });
    await expectEverywhereWithin('bob', 'POST', '/orgs/acme/projects', 200);
  });

  it('changing a built-in role every member holds', async () => {
    await warm('bob', 'GET', '/orgs/acme/projects', 200);
    const builtin = db()('roles').whereNull('organization_id').where({ name: 'default' });
    const { permissions } = await builtin.clone().first<{ permissions: string[] }>('permissions');
    await builtin.clone().update({ permissions: ['organization:read'] });
    try {
      await expectEverywhereWithin('bob', 'GET', '/orgs/acme/projects', 403);
    } finally {
      await builtin.clone().update({ permissions });
    }
    await expectEverywhereWithin('bob', 'GET', '/orgs/acme/projects', 200);
  });

  it('creating and deleting a project', async () => {
    await warm('alice', 'GET', '/orgs/acme/projects/mobile', 404);
    const [mobile] = (await db()('projects').insert({ organization_id: dir.orgs.acme, slug: 'mobile' }).returning('id')) as Inserted;
    await expectEverywhereWithin('alice', 'GET', '/orgs/acme/projects/mobile', 200);
    await warm('alice', 'DELETE', '/orgs/acme', 409);
    await db()('projects').where({ id: mobile.id }).delete();
    await expectEverywhereWithin('alice', 'GET', '/orgs/acme/projects/mobile', 404);
  });

  it('renaming an organization', async () => {
    await warm('dave', 'GET', '/orgs/globex', 200);
    await warm('dave', 'GET', '/orgs/globex-corp', 403);
    await db()('organizations').where({ id: dir.orgs.globex }).update({ slug: 'globex-corp' });
    try {
      await expectEverywhereWithin('dave', 'GET', '/orgs/globex-corp', 200);
      await expectEverywhereWithin('dave', 'GET', '/orgs/globex', 403);
    } finally {
      await db()('organizations').where({ id: dir.orgs.globex }).update({ slug: 'globex' });
    }
  });

  it('registering the user behind a token that was already seen', async () => {
    await warm('frank', 'GET', '/users/me', 403);
    await db()('users').insert({ subject: 'frank|sub', email: 'frank@example.com' });
    await expectEverywhereWithin('frank', 'GET', '/users/me', 200);
  });

  it('accepting an invitation', async () => {
    await warm('carol', 'POST', `/invitations/${dir.invitations.carol}/accept`, 200);
    await db()('invitations').where({ id: dir.invitations.carol }).update({ accepted_at: new Date() });
    try {
      await expectEverywhereWithin('carol', 'POST', `/invitations/${dir.invitations.carol}/accept`, 409);
    } finally {
      await db()('invitations').where({ id: dir.invitations.carol }).update({ accepted_at: null });
    }
  });
});

describe('when the notification connection drops', () => {
  const listeners = () => listenerPids(db());

  it('clears the caches, reconnects, and is fresh again', async () => {
    await warm('bob', 'GET', '/orgs/acme', 200);
    const before = await listeners();
    expect(before).toHaveLength(2);
    await db().raw('select pg_terminate_backend(pid) from unnest(?::int[]) as pid', [before]);
    // A change made while the gateways cannot hear it.
    const membership = await db()('organization_members')
      .where({ organization_id: dir.orgs.acme, user_id: dir.users.bob })
      .first<MembershipRow>();
    await db()('organization_members').where({ organization_id: dir.orgs.acme, user_id: dir.users.bob }).delete();
    await expectEverywhereWithin('bob', 'GET', '/orgs/acme', 403);

    const after = await waitFor(
      async () => {
        const current = await listeners();
        return current.length >= 2 && !current.some((pid) => before.includes(pid)) && current;
      },
      { timeoutMs: 5000, everyMs: 50, what: 'both gateways to listen on new connections' },
    );
    expect(after).toHaveLength(2);
    expect(after.filter((pid) => before.includes(pid))).toEqual([]);

    // Warm again on the new connections, then a change must be heard as before.
    await db()('organization_members').insert(membership);
    await expectEverywhereWithin('bob', 'GET', '/orgs/acme', 200);
    await warm('bob', 'GET', '/orgs/acme', 200);
    await db()('organization_members').where({ organization_id: dir.orgs.acme, user_id: dir.users.bob }).delete();
    await expectEverywhereWithin('bob', 'GET', '/orgs/acme', 403);
    await db()('organization_members').insert(membership);
  });
});
