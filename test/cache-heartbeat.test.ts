// The change listener's heartbeat against a connection that dies silently: a TCP proxy
// between the listener and PostgreSQL stops forwarding bytes without closing anything (a
// network partition, a half-open connection), so no error and no end ever arrive. The caches
// must be bypassed within the heartbeat bound, requests must then read fresh rows, and the
// listener must recover once the proxy forwards again. (pg_terminate_backend: cache-freshness.)
import net from 'node:net';
import pino from 'pino';
import { CachedSubjectLoader } from '../src/directory/cached-subject-loader';
import { DirectoryChangeListener } from '../src/directory/change-listener';
import { PgSubjectLoader } from '../src/directory/pg-subject-loader';
import { seedDirectory, type Directory } from './support/directory-fixtures';
import type { MembershipRow } from './support/rows';
import { createTestDatabase, type TestDatabase } from './support/test-database';
import { waitFor } from './support/wait-for';

/** The listener's defaults: a heartbeat every 2 s, answered within 2 s. */
const HEARTBEAT_BOUND_MS = 2_000 + 2_000;
/** Timers and the event loop on a busy shared machine. */
const SCHEDULING_SLACK_MS = 750;

/** Forwards TCP to `target` until frozen; frozen, it accepts and holds bytes but passes none on. */
class FreezableProxy {
  private frozen = false;
  private readonly pairs = new Set<{ client: net.Socket; upstream: net.Socket }>();
  private readonly server = net.createServer((client) => {
    const upstream = net.connect(this.target.port, this.target.host);
    const pair = { client, upstream };
    this.pairs.add(pair);
    const teardown = () => {
      this.pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', teardown).on('close', teardown);
    upstream.on('error', teardown).on('close', teardown);
    if (this.frozen) this.hold(pair);
    else this.forward(pair);
  });

  constructor(private readonly target: { host: string; port: number }) {}

  async listen(): Promise<number> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return (this.server.address() as net.AddressInfo).port;
  }

  freeze(): void {
    this.frozen = true;
    for (const pair of this.pairs) this.hold(pair);
  }

  resume(): void {
    this.frozen = false;
    for (const pair of this.pairs) this.forward(pair);
  }

  async close(): Promise<void> {
    for (const { client, upstream } of this.pairs) {
      client.destroy();
      upstream.destroy();
    }
    await new Promise((resolve) => this.server.close(resolve));
  }

  private forward({ client, upstream }: { client: net.Socket; upstream: net.Socket }): void {
    client.pipe(upstream);
    upstream.pipe(client);
  }

  /** Unread bytes stay buffered (they flow on resume); the sockets stay open. */
  private hold({ client, upstream }: { client: net.Socket; upstream: net.Socket }): void {
    client.unpipe(upstream);
    upstream.unpipe(client);
    client.pause();
    upstream.pause();
  }
}

let database: TestDatabase;
let dir: Directory;
let proxy: FreezableProxy;
let listener: DirectoryChangeListener;
let subjects: CachedSubjectLoader;

beforeAll(async () => {
  database = await createTestDatabase();
  dir = await seedDirectory(database.db);
  const postgres = new URL(database.url);
  proxy = new FreezableProxy({ host: postgres.hostname, port: Number(postgres.port) });
  const viaProxy = new URL(database.url);
  viaProxy.hostname = '127.0.0.1';
  viaProxy.port = String(await proxy.listen());
  // As the composition root wires it: the pool (database.db) reads PostgreSQL directly, the
  // listener has its own connection, here through the proxy.
  listener = new DirectoryChangeListener({ url: viaProxy.toString(), logger: pino({ level: 'silent' }) });
  subjects = new CachedSubjectLoader(new PgSubjectLoader(database.db), listener, { maxEntries: 100, ttlMs: 60_000 });
  listener.subscribe(subjects);
  await listener.start();
});

afterAll(async () => {
  await listener?.close();
  await proxy?.close();
  await database?.drop();
});

const organizationsOf = async (sub: string) => Object.keys((await subjects.load(sub)).memberships);
const bobInAcme = () => database.db('organization_members').where({ organization_id: dir.orgs.acme, user_id: dir.users.bob });
const restore = async (membership: object) => {
  await database.db('organization_members').insert(membership).onConflict(['organization_id', 'user_id']).ignore();
};

describe('a notification connection that dies silently', () => {
  it('is noticed by the heartbeat: the caches are bypassed within 2 s + 2 s and serve fresh rows, and serve again once the connection is back', async () => {
    expect(listener.live).toBe(true);
    expect(await organizationsOf('bob|sub')).toContain('acme');
    const warm = subjects.cacheStats();
    expect(await organizationsOf('bob|sub')).toContain('acme');
    expect(subjects.cacheStats().hits).toBe(warm.hits + 1);

    proxy.freeze();
    const frozenAt = Date.now();
    const heard = listener.stats().notifications;
    const membership = await bobInAcme().first<MembershipRow>();
    await bobInAcme().delete(); // its notification cannot reach the listener
    try {
      await waitFor(() => !listener.live, {
        timeoutMs: HEARTBEAT_BOUND_MS + SCHEDULING_SLACK_MS,
        what: 'the heartbeat to give up on the frozen connection',
      });
      expect(Date.now() - frozenAt).toBeLessThanOrEqual(HEARTBEAT_BOUND_MS + SCHEDULING_SLACK_MS);
      expect(listener.stats().notifications).toBe(heard);

      // Bypassed: every lookup reads PostgreSQL, and sees the change nobody was told about.
      const bypassed = subjects.cacheStats();
      expect(await organizationsOf('bob|sub')).not.toContain('acme');
      expect(await organizationsOf('bob|sub')).not.toContain('acme');
      expect(subjects.cacheStats()).toEqual({ hits: bypassed.hits, misses: bypassed.misses + 2, size: 0 });
    } finally {
      proxy.resume();
      await restore(membership);
    }

    // Back: listening again (on a new connection), caching again, and hearing changes.
    await waitFor(() => listener.live, { timeoutMs: 15_000, what: 'the listener to reconnect' });
    expect(listener.stats().reconnects).toBe(1);
    expect(await organizationsOf('bob|sub')).toContain('acme');
    const again = subjects.cacheStats();
    expect(await organizationsOf('bob|sub')).toContain('acme');
    expect(subjects.cacheStats().hits).toBe(again.hits + 1);
    await bobInAcme().delete();
    try {
      const deleted = Date.now();
      await waitFor(async () => !(await organizationsOf('bob|sub')).includes('acme'), { timeoutMs: 1_000, what: 'the change to be heard' });
      expect(Date.now() - deleted).toBeLessThan(1_000 + SCHEDULING_SLACK_MS);
      expect(listener.stats().notifications).toBeGreaterThan(heard);
    } finally {
      await restore(membership);
    }
  }, 30_000);
});
