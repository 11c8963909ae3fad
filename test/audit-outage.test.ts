// Nothing lost: a whole gateway over a PostgreSQL that goes away during traffic and comes
// back (every decision of the window is written afterwards, in order, and the chain verifies),
// a shutdown while it is away (the spool carries the records to the next start), and strict
// mode (no allow is forwarded before its record is durable), and both modes without a spool.
import { access, mkdir, mkdtemp, readFile, rm, symlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { Portcullis } from '../src/app';
import { verifyChain } from '../src/audit/chain/decision-chain-verifier';
import { PgDecisionQueryStore } from '../src/audit/store/pg-decision-query-store';
import { parseConfig } from '../src/config/load-config';
import { createDatabase } from '../src/db/database';
import { seedDirectory } from './support/directory-fixtures';
import { SERVICES, startHarness, type Harness } from './support/gateway-harness';
import { createTestDatabase } from './support/test-database';
import { AUDIENCE, ISSUER } from './support/token-issuer';
import { waitFor } from './support/wait-for';

const ADMIN_TOKEN = 'test-admin-token-0123456789';

let scratch: string;
beforeAll(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), 'portcullis-outage-'));
});
afterAll(async () => rm(scratch, { recursive: true, force: true }));

interface AuditStatus {
  backlog: number;
  memory: number;
  spool: number;
  spool_file: string | null;
}

const auditStatus = async (h: Harness | Portcullis): Promise<AuditStatus> => {
  const adminUrl = h instanceof Portcullis ? h.adminUrl : h.gateway.adminUrl;
  const res = await fetch(`${adminUrl}/admin/v1/audit`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  return (await res.json()) as AuditStatus;
};

/** Makes the harness' database refuse every connection until the returned function is called. */
async function takeDatabaseAway(h: Harness): Promise<() => Promise<void>> {
  const admin = createDatabase({ url: process.env.PORTCULLIS_TEST_DATABASE_URL! });
  const name = new URL(h.database.url).pathname.slice(1);
  await admin.raw(`alter database ${name} allow_connections false`);
  await admin.raw('select pg_terminate_backend(pid) from pg_stat_activity where datname = ?', [name]);
  return async () => {
    await admin.raw(`alter database ${name} allow_connections true`);
    await admin.destroy();
  };
}

/** Sends requests one after another; returns their decision ids and statuses in order. */
async function traffic(
  h: Harness,
  requests: { path: string; token?: string; method?: string }[],
): Promise<{ ids: string[]; statuses: number[] }> {
  const ids: string[] = [];
  const statuses: number[] = [];
  for (const request of requests) {
    const res = await h.request(request.path, { method: request.method ?? 'GET', ...(request.token ? { token: request.token } : {}) });
    await res.arrayBuffer();
    ids.push(res.headers.get('x-portcullis-decision')!);
    statuses.push(res.status);
  }
  return { ids, statuses };
}

/** The decisions table out of reach (renamed) while the connections stay up, and back. */
const decisionsAway = (h: Harness) => h.database.db.raw('alter table decisions rename to decisions_away');
const decisionsBack = (h: Harness) => h.database.db.raw('alter table decisions_away rename to decisions');

const spooledIds = async (file: string) =>
  (await readFile(file, 'utf8'))
    .split('\n')
    .filter(Boolean)
    .map((line) => (JSON.parse(line) as { id: string }).id);

describe('PostgreSQL unavailable during traffic', () => {
  let h: Harness;
  let alice: string;

  beforeAll(async () => {
    h = await startHarness({ audit: { spool_dir: path.join(scratch, 'spool-a') } });
    await seedDirectory(h.database.db);
    alice = await h.tokens.sign('alice|sub');
  });
  afterAll(async () => h?.close());

  it('spools every decision of the outage, writes them all in order once PostgreSQL is back, and the chain verifies', async () => {
    const mix = (n: number) =>
      Array.from({ length: n }, (_, i) =>
        i % 3 === 2
          ? { path: '/orgs/acme' }
          : i % 3 === 1
            ? { path: '/orgs/acme', method: 'DELETE', token: alice }
            : { path: '/orgs/acme', token: alice },
      );
    const before = await traffic(h, mix(9));
    expect(before.statuses.slice(0, 3)).toEqual([200, 409, 401]);
    await waitFor(async () => (await auditStatus(h)).backlog === 0, {
      timeoutMs: 15_000,
      what: 'the records before the outage to be written',
    });

    const restore = await takeDatabaseAway(h);
    let during: { ids: string[]; statuses: number[] };
    try {
      during = await traffic(h, mix(30));
      // Some are served from the caches, some fail closed (503), the anonymous ones are 401s: all are decisions.
      expect(during.ids.every((id) => /^[0-9a-f-]{36}$/.test(id))).toBe(true);
      expect(during.statuses).toContain(401);
      const status = await waitFor(
        async () => {
          const current = await auditStatus(h);
          return current.spool === during.ids.length && current.memory === 0 && current;
        },
        { timeoutMs: 15_000, what: 'the outage decisions to be spooled' },
      );
      expect(status.backlog).toBe(during.ids.length);
      expect(await spooledIds(status.spool_file!)).toEqual(during.ids);
      expect(
        await h.database
          .db('decisions')
          .count({ n: '*' })
          .catch(() => 'unreachable'),
      ).toBe('unreachable');
    } finally {
      await restore();
    }

    const after = await traffic(h, mix(6));
    const status = await waitFor(
      async () => {
        const current = await auditStatus(h);
        return current.backlog === 0 && current;
      },
      { timeoutMs: 15_000, what: 'the spool to be replayed' },
    );
    expect(await readFile(status.spool_file!, 'utf8')).toBe('');

    const expected = [...before.ids, ...during!.ids, ...after.ids];
    const stored = (await h.database.db('decisions').select('id').orderBy('seq')).map((row: { id: string }) => row.id);
    expect(stored).toEqual(expected);
    expect(await verifyChain(new PgDecisionQueryStore(h.database.db))).toMatchObject({ ok: true, checked: expected.length });
  });
});

describe('shutting down while PostgreSQL is away', () => {
  it('puts what could not be written in the spool, and the next start writes it', async () => {
    const spoolDir = path.join(scratch, 'spool-b');
    const first = await startHarness({ audit: { spool_dir: spoolDir } });
    let second: Portcullis | undefined;
    try {
      await seedDirectory(first.database.db);
      const alice = await first.tokens.sign('alice|sub');
      const restore = await takeDatabaseAway(first);
      let ids: string[];
      try {
        ({ ids } = await traffic(first, [
          { path: '/orgs/acme', token: alice },
          { path: '/orgs/acme' },
          { path: '/orgs/globex', token: alice },
        ]));
        const started = Date.now();
        await first.gateway.close();
        expect(Date.now() - started).toBeLessThan(8_000);
        expect(await spooledIds(path.join(spoolDir, 'decisions.ndjson'))).toEqual(ids);
      } finally {
        await restore();
      }

      // A new gateway on the same spool: the records are written before anything else.
      const config = parseConfig(
        {
          server: { host: '127.0.0.1', port: 0 },
          admin: { host: '127.0.0.1', port: 0, token: ADMIN_TOKEN },
          database: { url: first.database.url },
          auth: { issuer: ISSUER, audience: AUDIENCE, jwks_file: first.tokens.jwksFile, algorithms: ['ES256'] },
          policy: { source: process.env.PORTCULLIS_TEST_BUNDLE },
          services: Object.fromEntries(SERVICES.map((name) => [name, { url: first.upstreams[name].url }])),
          audit: { spool_dir: spoolDir },
        },
        {},
        scratch,
      );
      second = await Portcullis.start(config, {
        logger: pino({ level: 'silent' }),
        stateDir: path.join(scratch, 'state-b'),
        toolchain: {},
      });
      await waitFor(async () => (await auditStatus(second!)).backlog === 0, {
        timeoutMs: 15_000,
        what: 'the spool of the first run to be written',
      });
      const stored = (await first.database.db('decisions').select('id').orderBy('seq')).map((row: { id: string }) => row.id);
      expect(stored).toEqual(ids);
      expect(await verifyChain(new PgDecisionQueryStore(first.database.db))).toMatchObject({ ok: true, checked: ids.length });
    } finally {
      await second?.close();
      await first.close();
    }
  });
});

describe('audit.mode: strict', () => {
  let h: Harness;
  let alice: string;
  const spoolDir = () => path.join(scratch, 'spool-strict');

  beforeAll(async () => {
    // A spool that can never be written: every append fails with ENOSPC.
    await rm(spoolDir(), { recursive: true, force: true });
    await mkdir(spoolDir(), { recursive: true });
    await symlink('/dev/full', path.join(spoolDir(), 'decisions.ndjson'));
    h = await startHarness({ audit: { mode: 'strict', spool_dir: spoolDir() } });
    await seedDirectory(h.database.db);
    alice = await h.tokens.sign('alice|sub');
  });
  afterAll(async () => h?.close());

  it('forwards an allowed request only once its decision is in PostgreSQL', async () => {
    const res = await h.request('/orgs/acme', { token: alice });
    expect(res.status).toBe(200);
    const id = res.headers.get('x-portcullis-decision');
    // No flush, no waiting: the record was durable before the upstream saw the request.
    expect(await h.database.db('decisions').where({ id }).first('allow', 'status')).toEqual({ allow: true, status: 200 });
  });

  it('answers a denial only once its decision is in PostgreSQL, so no answered decision id can lack its record', async () => {
    const res = await h.request('/orgs/globex', { token: alice });
    expect(res.status).toBe(403);
    const id = res.headers.get('x-portcullis-decision');
    // No flush, no waiting: the denial was durable before it was answered.
    expect(await h.database.db('decisions').where({ id }).first('allow', 'status')).toEqual({ allow: false, status: 403 });
  });

  it('refuses with 503 and forwards nothing when the record can be neither written nor spooled', async () => {
    const received = h.upstreams.organizations.received.length;
    await decisionsAway(h);
    let res: Response;
    try {
      res = await h.request('/orgs/acme', { token: alice });
    } finally {
      await decisionsBack(h);
    }
    expect(res.status).toBe(503);
    expect(((await res.json()) as { detail: string }).detail).toMatch(/could not be recorded durably \(audit.mode: strict\)/);
    expect(h.upstreams.organizations.received.length).toBe(received);
    // The refusal itself is recorded once PostgreSQL takes records again; the allow never is.
    const id = res.headers.get('x-portcullis-decision');
    const row = await waitFor(async () => h.database.db('decisions').where({ id }).first('allow', 'status'), {
      timeoutMs: 15_000,
      what: 'the refusal to be recorded',
    });
    expect(row).toEqual({ allow: false, status: 503 });
    expect(await h.database.db('decisions').where({ id }).count({ n: '*' })).toEqual([{ n: '1' }]);
  });
});

describe('audit.spool: none (a state folder that does not outlive the instance)', () => {
  let alice: string;
  const spoolFolderExists = (h: Harness) =>
    access(path.join(h.stateDir, 'spool')).then(
      () => true,
      () => false,
    );

  describe('in strict mode', () => {
    let h: Harness;
    beforeAll(async () => {
      h = await startHarness({ audit: { mode: 'strict', spool: 'none' } });
      await seedDirectory(h.database.db);
      alice = await h.tokens.sign('alice|sub');
    });
    afterAll(async () => h?.close());

    it('refuses with 503 what PostgreSQL cannot take, instead of counting a file that dies with the instance as durable', async () => {
      const received = h.upstreams.organizations.received.length;
      await decisionsAway(h);
      let res: Response;
      let status: AuditStatus;
      try {
        res = await h.request('/orgs/acme', { token: alice });
        status = await auditStatus(h);
      } finally {
        await decisionsBack(h);
      }
      expect(res.status).toBe(503);
      expect(((await res.json()) as { detail: string }).detail).toMatch(/could not be recorded durably \(audit.mode: strict\)/);
      expect(h.upstreams.organizations.received.length).toBe(received);
      expect(status).toMatchObject({ spool: 0, spool_file: null });
      expect(await spoolFolderExists(h)).toBe(false);

      // With PostgreSQL back, allows are forwarded again, each once its record is stored.
      const ok = await h.request('/orgs/acme', { token: alice });
      expect(ok.status).toBe(200);
      expect(
        await h.database
          .db('decisions')
          .where({ id: ok.headers.get('x-portcullis-decision') })
          .first('allow'),
      ).toEqual({ allow: true });
    });
  });

  describe('in async mode', () => {
    let h: Harness;
    beforeAll(async () => {
      h = await startHarness({ audit: { spool: 'none' } });
      await seedDirectory(h.database.db);
      alice = await h.tokens.sign('alice|sub');
    });
    afterAll(async () => h?.close());

    it('keeps what PostgreSQL cannot take in memory, writes it in order once it is back, and the chain verifies', async () => {
      const requests = Array.from({ length: 8 }, (_, i) => ({ path: '/orgs/acme', ...(i % 4 === 3 ? {} : { token: alice }) }));
      await decisionsAway(h);
      let during: { ids: string[]; statuses: number[] };
      try {
        during = await traffic(h, requests);
        expect(during.statuses).toEqual([200, 200, 200, 401, 200, 200, 200, 401]);
        const status = await waitFor(
          async () => {
            const current = await auditStatus(h);
            return current.memory === during.ids.length && current;
          },
          { timeoutMs: 15_000, what: 'the records to wait in memory' },
        );
        expect(status).toMatchObject({ backlog: during.ids.length, spool: 0, spool_file: null });
        expect(await spoolFolderExists(h)).toBe(false);
      } finally {
        await decisionsBack(h);
      }

      await waitFor(async () => (await auditStatus(h)).backlog === 0, { timeoutMs: 15_000, what: 'the records to be written' });
      const stored = (await h.database.db('decisions').select('id').orderBy('seq')).map((row: { id: string }) => row.id);
      expect(stored).toEqual(during!.ids);
      expect(await verifyChain(new PgDecisionQueryStore(h.database.db))).toMatchObject({ ok: true, checked: during!.ids.length });
    });
  });

  it('shuts down within its grace while PostgreSQL is away, saying how many records are lost, and leaves no retry behind', async () => {
    const logged: { msg: string; lost?: number }[] = [];
    const logger = pino({ level: 'error' }, { write: (line: string) => logged.push(JSON.parse(line) as { msg: string; lost?: number }) });
    const database = await createTestDatabase();
    const h = await startHarness(
      { server: { host: '127.0.0.1', port: 0, upstream_timeout_ms: 2000, shutdown_grace_ms: 2000 }, audit: { spool: 'none' } },
      { logger, database },
    );
    try {
      await seedDirectory(database.db);
      const token = await h.tokens.sign('alice|sub');
      await decisionsAway(h);
      const { statuses } = await traffic(h, [{ path: '/orgs/acme', token }, { path: '/orgs/acme', token }, { path: '/orgs/acme' }]);
      expect(statuses).toEqual([200, 200, 401]);
      expect(await spoolFolderExists(h)).toBe(false);
      const started = Date.now();
      await h.close();
      expect(Date.now() - started).toBeLessThan(4_000);
      await decisionsBack(h);
      expect(await database.db('decisions').count({ n: '*' })).toEqual([{ n: '0' }]);
    } finally {
      await database.drop();
    }
    const lostLine = logged.find((line) =>
      line.msg.startsWith('decision records PostgreSQL had not taken by the shutdown deadline are lost'),
    );
    expect(lostLine).toMatchObject({ lost: 3 });
    // Nothing is retried once the gateway is closed: the log stays as it was.
    const lines = logged.length;
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(logged.length).toBe(lines);
  });
});
