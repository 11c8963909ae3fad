// A write the gateway forwarded, once answered, is what it judges the next request on, even
// before PostgreSQL's change notification has reached its caches: the requests read after the
// answer wait until the caches have caught up (one round trip on the listener's connection, ahead
// of which PostgreSQL sends the notifications). Here the notification is held back by stopping
// the listener's PostgreSQL backend (SIGSTOP).
import { seedDirectory, type Directory } from './support/directory-fixtures';
import { startHarness, type Harness } from './support/gateway-harness';
import { createTestDatabase, type TestDatabase } from './support/test-database';
import { listenerPids } from './support/listener-backends';
import { settled, waitFor } from './support/wait-for';

let database: TestDatabase;
let dir: Directory;
let gateway: Harness;
/** bob's membership of acme, as the first test found it before removing it. */
let bobInAcme: Record<string, unknown>;

beforeAll(async () => {
  database = await createTestDatabase();
  dir = await seedDirectory(database.db);
  gateway = await startHarness({}, { database });
});

afterAll(async () => {
  await gateway?.close();
  await database?.drop();
});

async function statusOf(user: string, method: string, path: string): Promise<number> {
  const res = await gateway.request(path, {
    method,
    token: await gateway.tokens.sign(`${user}|sub`),
    ...(method === 'GET' ? {} : { body: '{}' }),
  });
  await res.arrayBuffer();
  return res.status;
}

/** The gateway's notification connection's backend. Its database's only: the tests running beside this one share the server. */
async function listenerPid(): Promise<number> {
  const pids = await listenerPids(database.db);
  expect(pids).toHaveLength(1);
  return pids[0]!;
}

/** Runs `work` while the listener's backend is stopped: nothing it is sent arrives meanwhile. */
async function withoutNotifications<T>(work: (pid: number) => Promise<T>): Promise<T> {
  const pid = await listenerPid();
  process.kill(pid, 'SIGSTOP');
  try {
    return await work(pid);
  } finally {
    process.kill(pid, 'SIGCONT');
  }
}

/** The organizations service removes bob from acme while answering a request, and commits before it answers. */
function removeBobWhileAnswering(): void {
  gateway.upstreams.organizations.handler = (_req, res) => {
    void database
      .db('organization_members')
      .where({ organization_id: dir.orgs.acme, user_id: dir.users.bob })
      .delete()
      .then(() => {
        res.writeHead(201, { 'content-type': 'application/json' });
        res.end('{}');
      });
  };
}

it('a member removed by a write the gateway forwarded is refused on the very next request, once the caches have caught up', async () => {
  expect(await statusOf('bob', 'GET', '/orgs/acme')).toBe(200); // bob's subject is cached now
  bobInAcme = await database
    .db('organization_members')
    .where({ organization_id: dir.orgs.acme, user_id: dir.users.bob })
    .first<Record<string, unknown>>();
  removeBobWhileAnswering();
  let next: Promise<number> | undefined;
  let pid: number | undefined;
  try {
    await withoutNotifications(async (stopped) => {
      pid = stopped;
      expect(await statusOf('alice', 'POST', '/orgs/acme/members')).toBe(201);
      next = statusOf('bob', 'GET', '/orgs/acme');
      const answered = settled(next);
      await new Promise((resolve) => setTimeout(resolve, 300));
      // Held until the notification has reached the caches; served from them now it would be 200.
      expect(answered()).toBe(false);
    });
  } finally {
    gateway.upstreams.organizations.handler = undefined;
  }
  expect(await next).toBe(403);
  // Caught up through the notification, on the same connection: no reconnect emptied the caches.
  expect(await listenerPid()).toBe(pid);
});

it('a read the gateway forwarded leaves the caches as they were', async () => {
  expect(await statusOf('dave', 'GET', '/orgs/globex')).toBe(200);
  expect(await statusOf('bob', 'GET', '/orgs/acme')).toBe(403); // as the test before left it: cached now
  // A change the gateway hears nothing of, and a read forwarded meanwhile: the cache still answers.
  await withoutNotifications(async () => {
    await database.db('organization_members').insert(bobInAcme);
    expect(await statusOf('dave', 'GET', '/orgs/globex')).toBe(200);
    expect(await statusOf('bob', 'GET', '/orgs/acme')).toBe(403);
  });
});

it('a listener that cannot catch up after a write is dropped, and the next request reads PostgreSQL', async () => {
  // bob is back in acme (the test before), and the gateway has heard of it.
  await waitFor(async () => (await statusOf('bob', 'GET', '/orgs/acme')) === 200, { what: 'bob to be a member of acme again' });
  removeBobWhileAnswering();
  try {
    await withoutNotifications(async () => {
      expect(await statusOf('alice', 'POST', '/orgs/acme/members')).toBe(201);
      // The round trip goes unanswered past the listener's bound (2 s): the caches are emptied and off.
      expect(await statusOf('bob', 'GET', '/orgs/acme')).toBe(403);
    });
  } finally {
    gateway.upstreams.organizations.handler = undefined;
  }
}, 15_000);
