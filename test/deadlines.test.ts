// Deadlines and clients that leave, against a real gateway, PostgreSQL and upstream: a
// directory lookup that meets a lock is a recorded 503 within database.timeout_ms (the pool
// stays healthy), and a client whose connection closes early gets no more work done for it
// (no lookup awaited, nothing forwarded, no upstream request left open) and a record that says
// what it really got.
import type http from 'node:http';
import net from 'node:net';
import type { Knex } from 'knex';
import { createDatabase, QUERY_TIMEOUT_MARGIN_MS } from '../src/db/database';
import { waitFor } from './support/wait-for';
import { seedDirectory } from './support/directory-fixtures';
import { startHarness, type Harness } from './support/gateway-harness';
import { createTestDatabase, type TestDatabase } from './support/test-database';

const TIMEOUT_MS = 1_000;
/** Scheduling and the round trip on a busy two-core machine; the bound itself is TIMEOUT_MS. */
const MARGIN_MS = 700;

let database: TestDatabase;
let h: Harness;
let alice: string;
let locker: Knex;

beforeAll(async () => {
  database = await createTestDatabase();
  await seedDirectory(database.db);
  // Uncached, so every request asks PostgreSQL; a long upstream timeout, so only the client's
  // departure can end a forwarded request early.
  h = await startHarness(
    {
      database: { url: database.url, timeout_ms: TIMEOUT_MS },
      cache: { enabled: false },
      server: { host: '127.0.0.1', port: 0, upstream_timeout_ms: 30_000 },
    },
    { database },
  );
  alice = await h.tokens.sign('alice|sub');
  locker = createDatabase({ url: database.url });
}, 60_000);

afterAll(async () => {
  await locker?.destroy();
  await h?.close();
  await database?.drop();
});

interface DecisionRow {
  id: string;
  allow: boolean;
  status: number;
  reasons: string[];
  time: Date;
}

const recordWhere = (where: Partial<DecisionRow> & { request_id?: string }) =>
  waitFor(() => h.database.db('decisions').where(where).first() as Promise<DecisionRow | undefined>, {
    what: `the record ${JSON.stringify(where)}`,
    timeoutMs: 5_000,
  });
const recordOf = (id: string) => recordWhere({ id });

afterEach(() => {
  h.upstreams.organizations.handler = undefined;
});

/** Runs `body` while another session holds `tables` in ACCESS EXCLUSIVE mode, then releases them. */
async function whileLocked<T>(tables: string, body: () => Promise<T>): Promise<T> {
  const trx = await locker.transaction();
  try {
    await trx.raw(`lock table ${tables} in access exclusive mode`);
    return await body();
  } finally {
    await trx.rollback();
  }
}

/** Resolves once a gateway statement matching one of `likes` has waited for a lock at least `ms`. */
const waitingOnLock = (likes: string[], ms = 0) =>
  waitFor(
    async () => {
      const { rows } = await locker.raw<{ rows: unknown[] }>(
        `select 1 from pg_stat_activity
         where datname = current_database() and application_name = 'portcullis' and wait_event_type = 'Lock' and query ilike any(?::text[]) and now() - query_start >= ? * interval '1 millisecond'`,
        [likes, ms],
      );
      return rows.length > 0;
    },
    { what: `a statement like ${likes.join(' or ')} to wait on a lock for ${ms} ms`, timeoutMs: 10_000 },
  );
const subjectLookupWaiting = () => waitingOnLock(['%subject_user%']);
/** The decision writer's statements that need the decisions table (its first write of a month creates the partition). */
const DECISION_WRITES = ['%insert into decisions (%', 'create table if not exists decisions_%'];

/** A raw connection that sends `request` and is destroyed by the caller, like a client that gives up. */
function openRequest(request: string): Promise<net.Socket> {
  const { hostname, port } = new URL(h.gateway.gatewayUrl);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname, () => {
      socket.write(request.replace(/\r?\n/g, '\r\n'));
      resolve(socket);
    });
    socket.on('error', reject);
  });
}

describe('a directory lookup that meets a lock', () => {
  it('answers a recorded 503 within database.timeout_ms, and serves again when the lock is released, the pool not poisoned', async () => {
    const ask = () => h.request('/orgs/acme', { token: alice, signal: AbortSignal.timeout(10_000) });
    expect((await ask()).status).toBe(200);

    const refused = await whileLocked('users', async () => {
      const answers = await Promise.all(
        Array.from({ length: 3 }, async () => {
          const started = Date.now();
          const res = await ask();
          return { res, ms: Date.now() - started, body: (await res.json()) as { detail: string } };
        }),
      );
      return answers;
    });
    for (const { res, ms, body } of refused) {
      expect(res.status).toBe(503);
      expect(body.detail).toMatch(/directory database/);
      expect(ms).toBeGreaterThanOrEqual(TIMEOUT_MS - 100);
      expect(ms).toBeLessThan(TIMEOUT_MS + MARGIN_MS);
      expect(await recordOf(res.headers.get('x-portcullis-decision')!)).toMatchObject({ allow: false, status: 503 });
    }
    expect(
      h.upstreams.organizations.received.filter((seen) =>
        refused.some(({ res }) => seen.headers['x-portcullis-decision'] === res.headers.get('x-portcullis-decision')),
      ),
    ).toEqual([]);

    // More requests at once than the pool has connections: every connection the locked
    // lookups used came back healthy.
    const after = await Promise.all(Array.from({ length: 25 }, () => ask()));
    expect(after.map((res) => res.status)).toEqual(Array(25).fill(200));
  }, 30_000);

  it('leaves the decision writer and the admin API without that deadline: they wait for a lock longer than the request path may', async () => {
    const admin = { authorization: 'Bearer test-admin-token-0123456789' };
    const { res, listed } = await whileLocked('decisions', async () => {
      const answer = await h.request('/orgs/acme', { token: alice });
      await answer.arrayBuffer();
      const list = fetch(`${h.gateway.adminUrl}/admin/v1/decisions?limit=1`, { headers: admin });
      // The record's write and the admin query have waited longer than the request path's
      // server- and client-side limits allow, and still wait.
      await waitingOnLock(DECISION_WRITES, TIMEOUT_MS + QUERY_TIMEOUT_MARGIN_MS + 300);
      await waitingOnLock(['select%from "decisions"%'], TIMEOUT_MS + QUERY_TIMEOUT_MARGIN_MS + 300);
      return { res: answer, listed: list };
    });
    expect(res.status).toBe(200);
    expect((await listed).status).toBe(200);
    expect(await recordOf(res.headers.get('x-portcullis-decision')!)).toMatchObject({ allow: true, status: 200 });
  }, 30_000);
});

describe('a client whose connection closes before the response', () => {
  it('stops waiting for the directory, forwards nothing, and records that the client went away (499)', async () => {
    const forwardedBefore = h.upstreams.organizations.received.length;
    const { socket, decisionId, closedAt } = await whileLocked('users', async () => {
      const socket = await openRequest(
        `GET /orgs/acme HTTP/1.1\nHost: x\nX-Request-Id: gone-during-lookup\nAuthorization: Bearer ${alice}\n\n`,
      );
      await subjectLookupWaiting();
      const closedAt = Date.now();
      socket.destroy();
      const { id: decisionId } = await recordWhere({ request_id: 'gone-during-lookup' });
      return { socket, decisionId, closedAt };
    });
    expect(socket.destroyed).toBe(true);
    const record = await recordOf(decisionId);
    expect(record).toMatchObject({ allow: false, status: 499, reasons: ['the client connection closed before the response was complete'] });
    // Recorded when the client left, not when the lookup's own deadline would have ended it.
    expect(record.time.getTime() - closedAt).toBeLessThan(TIMEOUT_MS / 2);
    expect(h.upstreams.organizations.received.length).toBe(forwardedBefore);
  }, 30_000);

  it('aborts the upstream request when the client leaves mid-forward, and records what the client got', async () => {
    const upstreamClosed = new Promise<{ finished: boolean }>((resolve) => {
      h.upstreams.organizations.handler = (_req: http.IncomingMessage, res: http.ServerResponse) => {
        // Never answers: only the gateway can end this request.
        res.on('close', () => resolve({ finished: res.writableFinished }));
      };
    });
    const socket = await openRequest(
      `GET /orgs/acme HTTP/1.1\nHost: x\nX-Request-Id: gone-mid-forward\nAuthorization: Bearer ${alice}\n\n`,
    );
    await waitFor(() => h.upstreams.organizations.received.some((seen) => seen.headers['x-request-id'] === 'gone-mid-forward'), {
      what: 'the request to reach the upstream',
    });
    socket.destroy();
    let timer: NodeJS.Timeout | undefined;
    const stillOpen = new Promise<'still open'>((resolve) => (timer = setTimeout(() => resolve('still open'), 5_000)));
    const closed = await Promise.race([upstreamClosed, stillOpen]);
    clearTimeout(timer);
    expect(closed).toEqual({ finished: false });

    const row = await recordWhere({ request_id: 'gone-mid-forward' });
    // The policy allowed it and it reached the upstream; the client got no response at all.
    expect(row).toMatchObject({ allow: true, status: 499 });
    expect(row.reasons).toContain('the client connection closed before the response was complete');
  }, 30_000);

  it('records a pipelined allowed request whose connection died on a parse error as not completed, and never forwards it', async () => {
    const raw = await openRequest(
      `GET /orgs/acme HTTP/1.1\nHost: x\nX-Request-Id: pipelined-then-garbage\nAuthorization: Bearer ${alice}\n\nNOT HTTP AT ALL\n\n`,
    );
    const received = new Promise<string>((resolve) => {
      let text = '';
      raw.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
      raw.on('close', () => resolve(text));
    });
    const answer = await received;
    // The only response on the wire is the parser's 400 for the garbage.
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    expect(answer).not.toMatch(/x-portcullis-decision/i);

    const row = await recordWhere({ request_id: 'pipelined-then-garbage' });
    expect(row).toMatchObject({ allow: false, status: 499, reasons: ['the client connection closed before the response was complete'] });

    // A later request is forwarded: had the pipelined one been forwarded, it would be there first.
    const next = await h.request('/orgs/acme', { token: alice, headers: { 'x-request-id': 'after-the-pipelined-one' } });
    expect(next.status).toBe(200);
    const ids = h.upstreams.organizations.received.map((seen) => seen.headers['x-request-id']);
    expect(ids).toContain('after-the-pipelined-one');
    expect(ids).not.toContain('pipelined-then-garbage');
  }, 30_000);

  it('records a completed forwarded request with the status the upstream answered', async () => {
    h.upstreams.organizations.handler = (_req, res) => {
      res.statusCode = 404;
      res.end('{"not":"here"}');
    };
    const res = await h.request('/orgs/acme', { token: alice });
    expect(res.status).toBe(404);
    // Allowed by the policy and forwarded; the client got the upstream's 404.
    expect(await recordOf(res.headers.get('x-portcullis-decision')!)).toMatchObject({ allow: true, status: 404 });
  });
});

/**
 * A TCP relay in front of PostgreSQL whose current connections can be made half-open: they
 * stay connected but nothing goes through any more, as when a server or a NAT silently drops
 * a connection. New connections pass normally.
 */
async function startFreezableRelay(databaseUrl: string) {
  const target = new URL(databaseUrl);
  const pairs = new Set<{ client: net.Socket; server: net.Socket; frozen: boolean }>();
  const relay = net.createServer((client) => {
    const server = net.connect(Number(target.port), target.hostname);
    const pair = { client, server, frozen: false };
    pairs.add(pair);
    client.on('data', (chunk) => pair.frozen || server.write(chunk));
    server.on('data', (chunk) => pair.frozen || client.write(chunk));
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      server.destroy();
    };
    client.on('close', end).on('error', end);
    server.on('close', end).on('error', end);
  });
  await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
  const url = new URL(databaseUrl);
  url.host = `127.0.0.1:${(relay.address() as net.AddressInfo).port}`;
  return {
    url: url.toString(),
    /** Every connection open now goes silent. */
    freeze: () => pairs.forEach((pair) => (pair.frozen = true)),
    /** Closes the silent connections, as the operating system eventually would. */
    cut: () => [...pairs].filter((pair) => pair.frozen).forEach((pair) => pair.client.destroy()),
    close: () => new Promise<void>((resolve) => relay.close(() => resolve())),
  };
}

describe('a half-open database connection', () => {
  it('answers 503 once the client-side query timeout passes, and never hands the dead connection out again', async () => {
    const relay = await startFreezableRelay(database.url);
    const viaRelay = await startHarness(
      {
        database: { url: relay.url, timeout_ms: TIMEOUT_MS },
        cache: { enabled: false },
        server: { host: '127.0.0.1', port: 0, shutdown_grace_ms: 2_000 },
      },
      { database: { ...database, drop: () => Promise.resolve() } },
    );
    const token = await viaRelay.tokens.sign('alice|sub');
    try {
      const ask = async () => {
        const started = Date.now();
        const res = await viaRelay.request('/orgs/acme', { token, signal: AbortSignal.timeout(10_000) });
        await res.arrayBuffer();
        return { status: res.status, ms: Date.now() - started };
      };
      expect((await ask()).status).toBe(200);

      // The pooled connections go silent: PostgreSQL never even sees the next statements.
      relay.freeze();
      const during = await Promise.all(Array.from({ length: 3 }, ask));
      expect(during.some(({ status }) => status === 503)).toBe(true);
      for (const { status, ms } of during) {
        expect([200, 503]).toContain(status);
        if (status === 503) expect(ms).toBeLessThan(TIMEOUT_MS + QUERY_TIMEOUT_MARGIN_MS + MARGIN_MS);
      }

      // Had a silent connection gone back into the pool, some of these would wait on it and fail.
      const after = await Promise.all(Array.from({ length: 25 }, ask));
      expect(after.map(({ status }) => status)).toEqual(Array(25).fill(200));
    } finally {
      relay.cut();
      await viaRelay.close();
      await relay.close();
    }
  }, 60_000);
});
