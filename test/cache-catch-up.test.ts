// The change listener's catching up (sync): after a write the gateway forwarded is answered, one
// round trip on the listening connection brings every change committed before it to the caches,
// since PostgreSQL sends a listening session its pending notifications ahead of the answer to its
// next statement. The listener's backend is stopped (SIGSTOP) to hold a notification back.
import pino from 'pino';
import { DirectoryChangeListener, DIRECTORY_CHANNEL } from '../src/directory/change-listener';
import type { DirectoryCache, DirectoryChange } from '../src/directory/directory-cache';
import { createTestDatabase, type TestDatabase } from './support/test-database';
import { listenerPids } from './support/listener-backends';
import { settled, waitFor } from './support/wait-for';

let database: TestDatabase;
let listener: DirectoryChangeListener | undefined;

beforeAll(async () => {
  database = await createTestDatabase({ empty: true });
});

afterEach(async () => {
  await listener?.close();
  listener = undefined;
});

afterAll(async () => {
  await database?.drop();
});

/** A cache that only counts what the listener tells it. */
class RecordingCache implements DirectoryCache {
  readonly evicted: DirectoryChange[] = [];
  cleared = 0;
  evict(change: DirectoryChange): void {
    this.evicted.push(change);
  }
  clear(): void {
    this.cleared += 1;
  }
}

async function listening(timeoutMs?: number): Promise<{ cache: RecordingCache; pid: number }> {
  const cache = new RecordingCache();
  listener = new DirectoryChangeListener({ url: database.url, logger: pino({ level: 'silent' }), ...(timeoutMs ? { timeoutMs } : {}) });
  listener.subscribe(cache);
  await listener.start();
  expect(listener.live).toBe(true);
  return { cache, pid: await listenerPid() };
}

/** The listener's backend in this test's database (the tests beside it share the server). */
async function listenerPid(): Promise<number> {
  const pids = await listenerPids(database.db);
  expect(pids).toHaveLength(1);
  return pids[0]!;
}

/** A committed change to bob's subject, as the directory's triggers announce one. */
async function commitChange(): Promise<void> {
  const payload = JSON.stringify({ table: 'organization_members', op: 'DELETE', subjects: { users: ['bob'] }, facts: {} });
  await database.db.raw('select pg_notify(?, ?)', [DIRECTORY_CHANNEL, payload]);
}

it('resolves only once a change committed before it has reached the caches', async () => {
  const { cache, pid } = await listening();
  process.kill(pid, 'SIGSTOP');
  let synced: Promise<void>;
  let isSynced: () => boolean;
  try {
    await commitChange();
    synced = listener!.sync();
    isSynced = settled(synced);
    await new Promise((resolve) => setTimeout(resolve, 300));
    // Held back with the notification: resolving now would let a request read the stale entry.
    expect(isSynced()).toBe(false);
    expect(cache.evicted).toHaveLength(0);
  } finally {
    process.kill(pid, 'SIGCONT');
  }
  await synced;
  expect(cache.evicted).toHaveLength(1);
  expect(cache.evicted[0]!.subjects.users).toEqual(['bob']);
  // Caught up, not dropped: the connection and the caches stay.
  expect(listener!.live).toBe(true);
  expect(cache.cleared).toBe(1); // the first connect's only
  expect(listener!.stats().reconnects).toBe(0);
});

it('shares one round trip among the syncs asked before it is sent, and says what a request must wait for', async () => {
  await listening();
  expect(listener!.catchingUp).toBeUndefined();
  const first = listener!.sync();
  const second = listener!.sync();
  expect(second).toBe(first);
  expect(listener!.catchingUp).toBe(first);
  await first;
  expect(listener!.catchingUp).toBeUndefined();
  // One asked while a round trip is in flight goes after it, so it covers what came meanwhile.
  const a = listener!.sync();
  await Promise.resolve();
  await Promise.resolve();
  const b = listener!.sync();
  expect(b).not.toBe(a);
  expect(listener!.catchingUp).toBe(b);
  const aDone = settled(a);
  await b;
  expect(aDone()).toBe(true);
  expect(listener!.catchingUp).toBeUndefined();
});

it('drops the connection when a sync is not answered in time: caches emptied and off until it is back', async () => {
  const { cache, pid } = await listening(500);
  process.kill(pid, 'SIGSTOP');
  try {
    await listener!.sync();
    expect(listener!.live).toBe(false);
    expect(cache.cleared).toBe(2);
    // Nothing to catch up with while not listening: the caches serve nothing.
    expect(listener!.sync()).toBeInstanceOf(Promise);
    expect(listener!.catchingUp).toBeUndefined();
  } finally {
    process.kill(pid, 'SIGCONT');
  }
  await waitFor(() => listener!.live, { what: 'the listener to listen again' });
  expect(listener!.stats().reconnects).toBe(1);
});
