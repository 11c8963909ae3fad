// The command line as an operator uses it: the built binary, real processes, exit codes
// and one-line errors.
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import { projectRoot } from '../src/project-root';
import { requireBuild, runCli as portcullis, spawnCli, whenReady } from './support/cli-process';
import { seedDirectory } from './support/directory-fixtures';
import { startEchoUpstream, type EchoUpstream } from './support/echo-upstream';
import { rawRequest } from './support/raw-http';
import { createTestDatabase, type TestDatabase } from './support/test-database';
import { AUDIENCE, createTokenIssuer, ISSUER } from './support/token-issuer';
import { waitFor } from './support/wait-for';

let dir: string;
let database: TestDatabase;

beforeAll(async () => {
  requireBuild();
  dir = await mkdtemp(path.join(os.tmpdir(), 'portcullis-cli-'));
  database = await createTestDatabase();
});
afterAll(async () => {
  await database?.drop();
  await rm(dir, { recursive: true, force: true });
});

async function writeConfig(name: string, body: string): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(file, body);
  return file;
}

describe('portcullis serve', () => {
  it('refuses an unknown configuration key with exit code 2 and the key path on one line', async () => {
    const file = await writeConfig(
      'bad.yaml',
      'server: { port: 8080, colour: blue }\nauth: { issuer: x, audience: y, jwks_file: k.json }\nservices: {}\n',
    );
    const run = await portcullis(['serve', '--config', file]);
    expect(run.code).toBe(2);
    expect(run.stderr.trim().split('\n')).toHaveLength(1);
    expect(run.stderr).toMatch(/server: .*colour/);
  });

  it('refuses a missing configuration file with a reason a person can act on', async () => {
    const run = await portcullis(['serve', '--config', path.join(dir, 'absent.yaml')]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/cannot read configuration file .*absent\.yaml: ENOENT/);
  });

  it('compiles a policy directory at start, serves, and exits 0 on SIGTERM', async () => {
    const tokens = await createTokenIssuer(dir);
    const upstream: EchoUpstream = await startEchoUpstream('organizations');
    await seedDirectory(database.db);
    const file = await writeConfig(
      'portcullis.yaml',
      [
        'server: { host: 127.0.0.1, port: 0 }',
        'admin: { host: 127.0.0.1, port: 0 }',
        'database: { url: "${TEST_DB}" }',
        `auth: { issuer: "${ISSUER}", audience: ${AUDIENCE}, jwks_file: jwks.json, algorithms: [ES256] }`,
        `policy: { source: ${path.join(projectRoot, 'policies')} }`,
        `services: { organizations: { url: "${upstream.url}" } }`,
      ].join('\n'),
    );
    const child = spawnCli(['serve', '--config', file], { TEST_DB: database.url });
    try {
      const serving = whenReady(child);
      const gatewayUrl = await serving.gatewayUrl;
      const res = await fetch(`${gatewayUrl}/orgs/acme`, { headers: { authorization: `Bearer ${await tokens.sign('alice|sub')}` } });
      expect(res.status).toBe(200);
      expect(serving.output()).toMatch(/compiled policies in \d+ ms/);
      const exit = new Promise<number | null>((resolve) => child.on('close', resolve));
      child.kill('SIGTERM');
      expect(await exit).toBe(0);
    } finally {
      child.kill('SIGKILL');
      await upstream.close();
    }
  }, 60_000);
});

describe('portcullis serve under stress', () => {
  /** Uses the jwks.json of the token issuer the test created last. */
  async function serveConfig(name: string, policySource: string, upstreamUrl: string): Promise<string> {
    return writeConfig(
      name,
      [
        'server: { host: 127.0.0.1, port: 0 }',
        'admin: { host: 127.0.0.1, port: 0 }',
        'database: { url: "${TEST_DB}" }',
        `auth: { issuer: "${ISSUER}", audience: ${AUDIENCE}, jwks_file: jwks.json, algorithms: [ES256] }`,
        `policy: { source: "${policySource}" }`,
        `services: { organizations: { url: "${upstreamUrl}" } }`,
      ].join('\n'),
    );
  }

  it('exits non-zero with the compiler’s message when the policy does not compile at start', async () => {
    const broken = path.join(dir, 'broken-at-start');
    await mkdir(broken, { recursive: true });
    await writeFile(path.join(broken, 'policy.rego'), 'package portcullis\n\ndecision := {"allow": true\n');
    const file = await serveConfig('broken.yaml', broken, 'http://127.0.0.1:9');
    const run = await portcullis(['serve', '--config', file], { TEST_DB: database.url, LOG_LEVEL: 'silent' });
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/policy compilation failed: .*policy\.rego:4: rego_parse_error/);
  });

  it('on SIGTERM stops accepting, finishes the request in flight, records it and exits 0', async () => {
    const tokens = await createTokenIssuer(dir);
    const upstream = await startEchoUpstream('organizations');
    upstream.handler = (_req, res) => setTimeout(() => res.end('{"slow":true}'), 1500);
    const file = await serveConfig('graceful.yaml', process.env.PORTCULLIS_TEST_BUNDLE!, upstream.url);
    const child = spawnCli(['serve', '--config', file], { TEST_DB: database.url });
    try {
      const gatewayUrl = await whenReady(child).gatewayUrl;
      const inFlight = fetch(`${gatewayUrl}/orgs/acme`, { headers: { authorization: `Bearer ${await tokens.sign('alice|sub')}` } });
      let inFlightSettled = false;
      void inFlight.then(
        () => (inFlightSettled = true),
        () => (inFlightSettled = true),
      );
      await waitFor(() => upstream.received.length === 1, { what: 'the slow request to reach the upstream' });
      const exit = new Promise<number | null>((resolve) => child.on('close', resolve));
      child.kill('SIGTERM');
      // Each probe opens a new connection (no keep-alive reuse) and carries no token, so it never reaches the upstream.
      const probe = 'GET /orgs/acme HTTP/1.1\nHost: gateway\nConnection: close\n\n';
      await waitFor(
        () =>
          rawRequest(gatewayUrl, probe).then(
            () => false,
            () => true,
          ),
        { what: 'new connections to be refused' },
      );
      expect(inFlightSettled).toBe(false); // refused while the request in flight was still being served
      const res = await inFlight;
      expect(res.status).toBe(200);
      expect(await res.text()).toBe('{"slow":true}');
      expect(await exit).toBe(0);
      const decision = await database
        .db('decisions')
        .where({ id: res.headers.get('x-portcullis-decision') })
        .first<Record<string, unknown> | undefined>();
      expect(decision).toMatchObject({ allow: true, status: 200 });
    } finally {
      child.kill('SIGKILL');
      await upstream.close();
    }
  }, 60_000);
});

describe('portcullis serve --state-dir and db url', () => {
  it('keeps the embedded database in --state-dir, not beside the config, and `db url` opens it while it runs', async () => {
    const tokens = await createTokenIssuer(await mkdtemp(path.join(dir, 'idp-')));
    const configDir = await mkdtemp(path.join(dir, 'etc-'));
    const stateDir = path.join(dir, 'var-lib-portcullis');
    const file = path.join(configDir, 'portcullis.yaml');
    await writeFile(
      file,
      [
        'server: { host: 127.0.0.1, port: 0 }',
        'admin: { host: 127.0.0.1, port: 0 }',
        `auth: { issuer: "${ISSUER}", audience: ${AUDIENCE}, jwks_file: "${tokens.jwksFile}", algorithms: [ES256] }`,
        `policy: { source: "${process.env.PORTCULLIS_TEST_BUNDLE}" }`,
        'services: { organizations: { url: "http://127.0.0.1:9" } }',
      ].join('\n'),
    );
    const child = spawnCli(['serve', '--config', file, '--state-dir', stateDir]);
    try {
      const gatewayUrl = await whenReady(child).gatewayUrl;
      expect(existsSync(path.join(stateDir, 'pgdata', 'PG_VERSION'))).toBe(true);
      expect(existsSync(path.join(configDir, '.portcullis'))).toBe(false);

      const byFlag = await portcullis(['db', 'url', '--config', file, '--state-dir', stateDir]);
      expect(byFlag).toMatchObject({ code: 0, stderr: '' });
      expect(byFlag.stdout).toMatch(/^postgres:\/\/postgres:[^@\s]+@127\.0\.0\.1:\d+\/postgres\n$/);
      const byEnv = await portcullis(['db', 'url', '--config', file], { PORTCULLIS_STATE_DIR: stateDir });
      expect(byEnv.stdout).toBe(byFlag.stdout);

      // The URL reaches the gateway's own database: the decision of a request just made is there.
      const decisionId = (await fetch(`${gatewayUrl}/orgs/acme`)).headers.get('x-portcullis-decision');
      const client = new Client({ connectionString: byFlag.stdout.trim() });
      await client.connect();
      try {
        await waitFor(async () => (await client.query('select 1 from decisions where id = $1', [decisionId])).rowCount !== 0, {
          timeoutMs: 10_000,
          everyMs: 100,
          what: `decision ${decisionId} through db url`,
        });
      } finally {
        await client.end();
      }

      const exit = new Promise<number | null>((resolve) => child.on('close', resolve));
      child.kill('SIGTERM');
      expect(await exit).toBe(0);
      const stopped = await portcullis(['db', 'url', '--config', file, '--state-dir', stateDir]);
      expect(stopped.code).toBe(1);
      expect(stopped.stdout).toBe('');
      expect(stopped.stderr.trim()).toBe(
        `portcullis: no database is configured and no embedded PostgreSQL is running on ${path.join(stateDir, 'pgdata')}: start the gateway or the demo first (or pass --config / --state-dir)`,
      );
    } finally {
      child.kill('SIGKILL');
    }
  }, 120_000);

  it('prints the configured database.url, with ${VAR} replaced', async () => {
    const file = await writeConfig(
      'db-url.yaml',
      'database: { url: "${TEST_DB}" }\nauth: { issuer: x, audience: y, jwks_file: k.json }\nservices: {}\n',
    );
    const run = await portcullis(['db', 'url', '--config', file], { TEST_DB: database.url });
    expect(run).toEqual({ code: 0, stdout: `${database.url}\n`, stderr: '' });
  });
});

describe('portcullis migrate', () => {
  it('is idempotent', async () => {
    const fresh = await createTestDatabase({ empty: true });
    try {
      const file = await writeConfig(
        'migrate.yaml',
        `database: { url: "${fresh.url}" }\nauth: { issuer: x, audience: y, jwks_file: k.json }\nservices: {}\n`,
      );
      const first = await portcullis(['migrate', '--config', file]);
      expect(first).toMatchObject({ code: 0 });
      expect(first.stdout).toMatch(/applied \d+ migration/);
      const second = await portcullis(['migrate', '--config', file]);
      expect(second.code).toBe(0);
      expect(second.stdout).toMatch(/database is up to date/);
    } finally {
      await fresh.drop();
    }
  });
});

describe('portcullis policy', () => {
  it('builds a WebAssembly bundle from policies/', async () => {
    const output = path.join(dir, 'bundle.tar.gz');
    const run = await portcullis(['policy', 'build', '--source', path.join(projectRoot, 'policies'), '--output', output]);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/built .*bundle\.tar\.gz \(revision sha256:[0-9a-f]{16}\)/);
    expect(existsSync(output)).toBe(true);
  });

  it('fails with the compiler’s message when a policy does not compile', async () => {
    const broken = path.join(dir, 'broken');
    await mkdir(broken, { recursive: true });
    await writeFile(path.join(broken, 'p.rego'), 'package portcullis\n\ndecision := {"allow": true\n');
    const run = await portcullis(['policy', 'build', '--source', broken, '--output', path.join(dir, 'b2.tar.gz')]);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/p\.rego:\d+/);
  });
});
