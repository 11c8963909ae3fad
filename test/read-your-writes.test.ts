// A write the gateway forwarded, once answered, is what it judges the next request on, even
// before PostgreSQL's change notification has reached its caches: here the notification cannot
// arrive at all (the listener's PostgreSQL backend is stopped with SIGSTOP while it happens).
import { seedDirectory, type Directory } from './support/directory-fixtures';
import { startHarness, type Harness } from './support/gateway-harness';
import { createTestDatabase, type TestDatabase } from './support/test-database';

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

/**
 * Runs `work` while the gateway's notification connection's backend is stopped: nothing it is sent
 * arrives meanwhile. Its database's only: the tests running beside this one share the server.
 */
async function withoutNotifications(work: () => Promise<void>): Promise<void> {
  const { rows } = await database.db.raw<{ rows: { pid: number }[] }>(
    "select pid from pg_stat_activity where application_name = 'portcullis-directory-listener' and datname = current_database()",
  );
  expect(rows).toHaveLength(1);
  const pid = rows[0]!.pid;
  process.kill(pid, 'SIGSTOP');
  try {
    await work();
  } finally {
    process.kill(pid, 'SIGCONT');
  }
}

it('a member removed by a write the gateway forwarded is refused on the very next request', async () => {
  expect(await statusOf('bob', 'GET', '/orgs/acme')).toBe(200); // bob's subject is cached now
  bobInAcme = await database
    .db('organization_members')
    .where({ organization_id: dir.orgs.acme, user_id: dir.users.bob })
    .first<Record<string, unknown>>();
  // The organizations service removes bob while answering alice's request, and commits before it answers.
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
  try {
    await withoutNotifications(async () => {
      expect(await statusOf('alice', 'POST', '/orgs/acme/members')).toBe(201);
      expect(await statusOf('bob', 'GET', '/orgs/acme')).toBe(403);
    });
  } finally {
    gateway.upstreams.organizations.handler = undefined;
  }
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
