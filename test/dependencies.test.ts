// Failing dependencies with real processes: PostgreSQL stopped while traffic flows must be
// answered 503 quickly, never hang and never allow, and service must resume by itself.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createDatabase, migrateToLatest } from '../src/db/database';
import { freePort } from '../src/base/free-port';
import { EmbeddedDatabase } from '../src/db/embedded-database';
import { seedDirectory } from './support/directory-fixtures';
import { startHarness, type Harness } from './support/gateway-harness';
import { waitFor } from './support/wait-for';

let dir: string;
let port: number;
let server: EmbeddedDatabase;
let h: Harness;
let db: ReturnType<typeof createDatabase>;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'portcullis-deps-'));
  port = await freePort();
  server = await EmbeddedDatabase.create({ dataDir: path.join(dir, 'pgdata'), port });
  db = createDatabase({ url: server.url, warn: () => undefined });
  await migrateToLatest(db);
  await seedDirectory(db);
  h = await startHarness({}, { database: { url: server.url, db, drop: async () => db.destroy() } });
}, 60_000);

afterAll(async () => {
  await h?.close();
  await db?.destroy();
  await server?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('PostgreSQL stopped while traffic flows', () => {
  it('answers 503 within 1 s without forwarding, reports not ready, and resumes when it is back', async () => {
    const token = await h.tokens.sign('alice|sub');
    const ask = () => fetch(`${h.gateway.gatewayUrl}/orgs/acme`, { headers: { authorization: `Bearer ${token}` } });
    const decisionIds: string[] = [];
    const first = await ask();
    expect(first.status).toBe(200);
    decisionIds.push(first.headers.get('x-portcullis-decision')!);

    await server.stop();
    const forwardedBefore = h.upstreams.organizations.received.length;
    for (let i = 0; i < 5; i += 1) {
      const started = Date.now();
      const res = await ask();
      expect(res.status).toBe(503);
      expect(Date.now() - started).toBeLessThan(1000);
      decisionIds.push(res.headers.get('x-portcullis-decision')!);
    }
    expect(h.upstreams.organizations.received.length).toBe(forwardedBefore);
    expect((await fetch(`${h.gateway.adminUrl}/readyz`)).status).toBe(503);

    server = await EmbeddedDatabase.create({ dataDir: path.join(dir, 'pgdata'), port });
    let status = 0;
    for (const deadline = Date.now() + 5000; status !== 200 && Date.now() < deadline;) {
      const res = await ask();
      status = res.status;
      decisionIds.push(res.headers.get('x-portcullis-decision')!);
      if (status !== 200) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(status).toBe(200);
    expect((await fetch(`${h.gateway.adminUrl}/readyz`)).status).toBe(200);

    // Decisions made during the outage were kept and written once PostgreSQL came back.
    await waitFor(
      async () => Number((await h.database.db('decisions').whereIn('id', decisionIds).count({ n: '*' }))[0]!.n) === decisionIds.length,
      {
        timeoutMs: 10_000,
        everyMs: 200,
        what: `all ${decisionIds.length} decisions of the outage to be stored`,
      },
    );
  }, 60_000);
});
