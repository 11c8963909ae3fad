// The embedded PostgreSQL as the zero-config start runs it: a random password per data folder,
// kept 0600 beside it, the old fixed password refused (and replaced on a folder that still has
// it), and nothing listening but 127.0.0.1.
import { mkdtemp, readFile, rm, stat, unlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import { EmbeddedDatabase, embeddedPasswordFile, runningEmbeddedUrl } from '../src/db/embedded-database';
import { requireBuild, spawnCli, whenReady } from './support/cli-process';
import { AUDIENCE, createTokenIssuer, ISSUER } from './support/token-issuer';

let dir: string;
let server: EmbeddedDatabase | undefined;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'portcullis-embedded-'));
});
afterAll(async () => {
  await server?.stop();
  await rm(dir, { recursive: true, force: true });
});

const dataDir = () => path.join(dir, 'pgdata');

async function connect(url: string): Promise<Client> {
  const client = new Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
  await client.connect();
  return client;
}

async function query(url: string, sql: string): Promise<Record<string, unknown>[]> {
  const client = await connect(url);
  try {
    return (await client.query<Record<string, unknown>>(sql)).rows;
  } finally {
    await client.end();
  }
}

function withPassword(url: string, password: string): string {
  const parsed = new URL(url);
  parsed.password = password;
  return parsed.toString();
}

describe('the embedded PostgreSQL', () => {
  it('initialises a data folder with a random password kept 0600 in the state folder, and connects with it', async () => {
    server = await EmbeddedDatabase.create({ dataDir: dataDir() });
    const file = embeddedPasswordFile(dataDir());
    expect(file).toBe(path.join(dir, 'pg-password'));
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const password = (await readFile(file, 'utf8')).trim();
    expect(password).not.toBe('portcullis');
    expect(password.length).toBeGreaterThanOrEqual(32);
    expect(decodeURIComponent(new URL(server.url).password)).toBe(password);
    expect(await query(server.url, 'select 1 as one')).toEqual([{ one: 1 }]);
    expect(runningEmbeddedUrl(dataDir())).toBe(server.url);
  }, 60_000);

  it('refuses a wrong password, the former fixed one included', async () => {
    for (const wrong of ['portcullis', 'not-the-password']) {
      await expect(connect(withPassword(server!.url, wrong))).rejects.toMatchObject({ code: '28P01' });
    }
  });

  it('listens on 127.0.0.1 only, with no Unix socket', async () => {
    expect(await query(server!.url, 'show listen_addresses')).toEqual([{ listen_addresses: '127.0.0.1' }]);
    expect(await query(server!.url, 'show unix_socket_directories')).toEqual([{ unix_socket_directories: '' }]);
    const others = Object.values(os.networkInterfaces())
      .flat()
      .filter((address) => address && address.family === 'IPv4' && !address.internal)
      .map((address) => address!.address);
    for (const address of others) {
      const url = new URL(server!.url);
      url.hostname = address;
      await expect(connect(url.toString())).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    }
  });

  it('keeps the password across restarts', async () => {
    const before = server!.url;
    await server!.stop();
    server = await EmbeddedDatabase.create({ dataDir: dataDir(), port: Number(new URL(before).port) });
    expect(server.url).toBe(before);
    expect(await query(server.url, 'select 1 as one')).toEqual([{ one: 1 }]);
  }, 60_000);

  it('replaces the fixed password of a data folder initialised before passwords were per folder', async () => {
    // As an earlier version left it: the password 'portcullis' and no pg-password file.
    await query(server!.url, "alter user postgres with password 'portcullis'");
    await server!.stop();
    server = undefined;
    await unlink(embeddedPasswordFile(dataDir()));

    const lines: string[] = [];
    server = await EmbeddedDatabase.create({ dataDir: dataDir(), onLog: (line) => lines.push(line) });
    const password = (await readFile(embeddedPasswordFile(dataDir()), 'utf8')).trim();
    expect(password).not.toBe('portcullis');
    expect((await stat(embeddedPasswordFile(dataDir()))).mode & 0o777).toBe(0o600);
    expect(await query(server.url, 'select 1 as one')).toEqual([{ one: 1 }]);
    await expect(connect(withPassword(server.url, 'portcullis'))).rejects.toMatchObject({ code: '28P01' });
    expect(lines.join('\n')).toMatch(/former fixed password was replaced by a random one/);
  }, 60_000);
});

describe('serve without database.url', () => {
  it('warns that the embedded database is for development, and stops it on SIGTERM', async () => {
    requireBuild();
    const folder = await mkdtemp(path.join(os.tmpdir(), 'portcullis-embedded-serve-'));
    await createTokenIssuer(folder);
    const file = path.join(folder, 'portcullis.yaml');
    await writeFile(
      file,
      [
        'server: { host: 127.0.0.1, port: 0 }',
        'admin: { host: 127.0.0.1, port: 0 }',
        `auth: { issuer: "${ISSUER}", audience: ${AUDIENCE}, jwks_file: jwks.json, algorithms: [ES256] }`,
        `policy: { source: "${process.env.PORTCULLIS_TEST_BUNDLE}" }`,
        'services: { organizations: { url: "http://127.0.0.1:9" } }',
      ].join('\n'),
    );
    const child = spawnCli(['serve', '--config', file]);
    const serve = whenReady(child);
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    try {
      await serve.gatewayUrl;
      expect(serve.output()).toMatch(
        /"level":40.*database.url is not set: using the embedded PostgreSQL in .*pgdata, which is for development/,
      );
      expect((await stat(path.join(folder, '.portcullis', 'pg-password'))).mode & 0o777).toBe(0o600);
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(runningEmbeddedUrl(path.join(folder, '.portcullis', 'pgdata'))).toBeUndefined();
    } finally {
      child.kill('SIGKILL');
      await rm(folder, { recursive: true, force: true });
    }
  }, 90_000);
});
