// Shutdown of the real `portcullis serve` process: SIGTERM while a request is stuck on a
// locked table (and the decision log is locked too) ends with exit 0 within
// server.shutdown_grace_ms, the stuck request answered and its record kept in the spool.
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Knex } from 'knex';
import { createDatabase } from '../src/db/database';
import { requireBuild, spawnCli, whenReady } from './support/cli-process';
import { seedDirectory } from './support/directory-fixtures';
import { startEchoUpstream, type EchoUpstream } from './support/echo-upstream';
import { createTestDatabase, type TestDatabase } from './support/test-database';
import { AUDIENCE, createTokenIssuer, ISSUER, type TokenIssuer } from './support/token-issuer';
import { waitFor } from './support/wait-for';

const GRACE_MS = 3_000;
/** Signal delivery and the exit event reaching the test on a busy machine; the bound is GRACE_MS (2.9 s measured). */
const MARGIN_MS = 750;

let dir: string;
let database: TestDatabase;
let tokens: TokenIssuer;
let upstream: EchoUpstream;
let locker: Knex;

beforeAll(async () => {
  requireBuild();
  dir = await mkdtemp(path.join(os.tmpdir(), 'portcullis-shutdown-'));
  database = await createTestDatabase();
  await seedDirectory(database.db);
  tokens = await createTokenIssuer(dir);
  upstream = await startEchoUpstream('organizations');
  locker = createDatabase({ url: database.url });
});

afterAll(async () => {
  await locker?.destroy();
  await upstream?.close();
  await database?.drop();
  await rm(dir, { recursive: true, force: true });
});

/** A serve config for the gateway on free ports, with the shipped policies and the echo upstream. */
async function writeConfig(name: string, lines: string[]): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(
    file,
    [
      'admin: { host: 127.0.0.1, port: 0 }',
      `auth: { issuer: "${ISSUER}", audience: ${AUDIENCE}, jwks_file: "${tokens.jwksFile}", algorithms: [ES256] }`,
      `policy: { source: "${process.env.PORTCULLIS_TEST_BUNDLE!}" }`,
      `services: { organizations: { url: "${upstream.url}" } }`,
      ...lines,
    ].join('\n'),
  );
  return file;
}

describe('portcullis serve on SIGTERM', () => {
  it('exits 0 within server.shutdown_grace_ms with a request stuck on a locked table, and that request is answered and its record spooled', async () => {
    const spoolDir = path.join(dir, 'spool');
    const file = await writeConfig('stuck.yaml', [
      `server: { host: 127.0.0.1, port: 0, shutdown_grace_ms: ${GRACE_MS} }`,
      // A lookup may take 30 s here: only the shutdown can end the stuck request in time.
      'database: { url: "${TEST_DB}", timeout_ms: 30000 }',
      'cache: { enabled: false }',
      `audit: { spool_dir: "${spoolDir}" }`,
    ]);
    const child = spawnCli(['serve', '--config', file], { TEST_DB: database.url });
    const trx = await locker.transaction();
    try {
      const ready = whenReady(child);
      const gatewayUrl = await ready.gatewayUrl;
      // The directory and the decision log both locked: the lookup hangs, and so would its record's write.
      await trx.raw('lock table users, decisions in access exclusive mode');
      const stuck = fetch(`${gatewayUrl}/orgs/acme`, { headers: { authorization: `Bearer ${await tokens.sign('alice|sub')}` } });
      await waitFor(
        async () => {
          const { rows } = await locker.raw<{ rows: unknown[] }>(
            `select 1 from pg_stat_activity where datname = current_database() and application_name = 'portcullis' and wait_event_type = 'Lock' and query like '%subject_user%'`,
          );
          return rows.length > 0;
        },
        { what: 'the subject lookup to wait for the lock' },
      );

      const exit = new Promise<number | null>((resolve) => child.on('close', resolve));
      const signalledAt = Date.now();
      child.kill('SIGTERM');
      const res = await stuck;
      expect(res.status).toBe(503);
      expect(((await res.json()) as { detail: string }).detail).toBe('the gateway is shutting down');
      expect(await exit).toBe(0);
      expect(Date.now() - signalledAt).toBeLessThan(GRACE_MS + MARGIN_MS);

      const decisionId = res.headers.get('x-portcullis-decision')!;
      const spoolFile = path.join(spoolDir, 'decisions.ndjson');
      expect(existsSync(spoolFile)).toBe(true);
      const spooled = (await readFile(spoolFile, 'utf8')).split('\n').filter((line) => line.includes(decisionId));
      expect(spooled).toHaveLength(1);
      expect(JSON.parse(spooled[0]!)).toMatchObject({ status: 503, allow: false, reasons: ['the gateway is shutting down'] });
      expect(ready.output()).not.toMatch(/unhandled/i);
    } finally {
      child.kill('SIGKILL');
      await trx.rollback();
    }
  }, 60_000);
});

describe('portcullis serve and a promise rejection nobody handled', () => {
  it('logs it and keeps serving', async () => {
    // Stands in for a bug: a rejection nobody handles, planted in the serving process on cue.
    const plant = path.join(dir, 'plant-rejection.js');
    await writeFile(plant, "process.on('SIGUSR2', () => { Promise.reject(new Error('planted by the test')); });\n");
    const file = await writeConfig('rejection.yaml', [
      'server: { host: 127.0.0.1, port: 0 }',
      'database: { url: "${TEST_DB}" }',
      `audit: { spool_dir: "${path.join(dir, 'spool-rejection')}" }`,
    ]);
    const child = spawnCli(['serve', '--config', file], { TEST_DB: database.url, NODE_OPTIONS: `--require ${plant}` });
    const exit = new Promise<number | null>((resolve) => child.on('close', resolve));
    try {
      const ready = whenReady(child);
      const gatewayUrl = await ready.gatewayUrl;
      child.kill('SIGUSR2');
      await waitFor(() => /unhandled promise rejection.*still serving/.test(ready.output()), { what: 'the rejection to be logged' });
      expect(ready.output()).toMatch(/planted by the test/);
      const res = await fetch(`${gatewayUrl}/orgs/acme`, { headers: { authorization: `Bearer ${await tokens.sign('alice|sub')}` } });
      expect(res.status).toBe(200);
      child.kill('SIGTERM');
      expect(await exit).toBe(0);
    } finally {
      child.kill('SIGKILL');
    }
  }, 60_000);
});
