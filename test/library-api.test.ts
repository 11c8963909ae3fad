// The README's library example, run as written: an existing Express app with the real `cors`
// and `helmet` from npm in front of `createPortcullis(...).middleware`. CORS answers come
// from cors, security headers from helmet, and authorization still applies behind them.
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import cors from 'cors';
import express from 'express';
import helmet from 'helmet';
import pino from 'pino';
import { createExpressServer, createPortcullis, type PortcullisGate } from '../src/index';
import { seedDirectory } from './support/directory-fixtures';
import { startEchoUpstream, type EchoUpstream } from './support/echo-upstream';
import { SERVICES } from './support/gateway-harness';
import { createTestDatabase, type TestDatabase } from './support/test-database';
import { AUDIENCE, createTokenIssuer, ISSUER, type TokenIssuer } from './support/token-issuer';
import { waitFor } from './support/wait-for';

const ORIGIN = 'https://app.example.com';

let dir: string;
let database: TestDatabase;
let tokens: TokenIssuer;
let upstreams: EchoUpstream[];
let gate: PortcullisGate;
let server: http.Server;
let url: string;
let alice: string;
let erin: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'portcullis-library-'));
  database = await createTestDatabase();
  await seedDirectory(database.db);
  tokens = await createTokenIssuer(dir);
  upstreams = await Promise.all(SERVICES.map((name) => startEchoUpstream(name)));
  alice = await tokens.sign('alice|sub');
  erin = await tokens.sign('erin|sub');

  // As in the README, with this test's database, keys, policy bundle and upstreams.
  gate = await createPortcullis(
    {
      admin: { host: '127.0.0.1', port: 0, token: 'test-admin-token-0123456789' },
      database: { url: database.url },
      auth: { issuer: ISSUER, audience: AUDIENCE, jwks_file: tokens.jwksFile, algorithms: ['ES256'] },
      policy: { source: process.env.PORTCULLIS_TEST_BUNDLE! },
      services: Object.fromEntries(SERVICES.map((name, index) => [name, { url: upstreams[index]!.url }])),
    },
    {
      baseDir: dir,
      env: {},
      logger: pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }),
      toolchain: { opaBin: process.env.PORTCULLIS_TEST_OPA },
    },
  );

  const app = express();
  app.use(cors({ origin: ORIGIN })); // answers preflights itself
  app.use(helmet());
  app.use(gate.middleware); // last: authorize, record, forward; it answers every request it gets
  server = createExpressServer(app).listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
  await gate?.close();
  await Promise.all((upstreams ?? []).map((upstream) => upstream.close()));
  await database?.drop();
  await rm(dir, { recursive: true, force: true });
});

const received = () => upstreams.reduce((sum, upstream) => sum + upstream.received.length, 0);
const recorded = (decisionId: string) =>
  waitFor(() => database.db('decisions').where({ id: decisionId }).first('allow', 'status'), {
    what: `decision ${decisionId} to be recorded`,
  });

it('is the README example: cors(), then helmet(), then gate.middleware', () => {
  const readme = readFileSync(path.join(__dirname, '..', 'README.md'), 'utf8');
  const example = /### Mounting Portcullis in your own Express app[\s\S]*?```js\n([\s\S]*?)```/.exec(readme)?.[1] ?? '';
  const mounts = example.split('\n').filter((line) => line.trim().startsWith('app.use('));
  expect(mounts.map((line) => line.trim().replace(/\).*$/, ')'))).toEqual([
    `app.use(cors({ origin: '${ORIGIN}' })`,
    'app.use(helmet()',
    'app.use(gate.middleware)',
  ]);
  expect(example).toContain("const { createPortcullis, createExpressServer } = require('portcullis');");
  expect(example).toContain('const server = createExpressServer(app).listen(8080);');
});

it('leaves a CORS preflight to cors: answered 204 with its headers, not judged, not forwarded', async () => {
  const before = received();
  const res = await fetch(`${url}/orgs/acme/projects/api`, {
    method: 'OPTIONS',
    headers: { origin: ORIGIN, 'access-control-request-method': 'DELETE', 'access-control-request-headers': 'authorization' },
  });
  expect(res.status).toBe(204);
  expect(res.headers.get('access-control-allow-origin')).toBe(ORIGIN);
  expect(res.headers.get('access-control-allow-methods')).toContain('DELETE');
  expect(res.headers.get('access-control-allow-headers')).toBe('authorization');
  expect(res.headers.get('x-portcullis-decision')).toBeNull();
  expect(received()).toBe(before);
});

it('forwards an allowed request, with the CORS and helmet headers on the upstream answer', async () => {
  const res = await fetch(`${url}/orgs/acme/projects/api`, { headers: { origin: ORIGIN, authorization: `Bearer ${alice}` } });
  expect(res.status).toBe(200);
  const echoed = (await res.json()) as { url: string; headers: Record<string, string> };
  expect(echoed.url).toBe('/orgs/acme/projects/api');
  expect(echoed.headers['x-portcullis-assertion']).toBeDefined();
  expect(res.headers.get('access-control-allow-origin')).toBe(ORIGIN);
  expect(res.headers.get('x-content-type-options')).toBe('nosniff');
  expect(res.headers.get('content-security-policy')).toContain("default-src 'self'");
  expect(res.headers.get('x-powered-by')).toBeNull();
  const decisionId = res.headers.get('x-portcullis-decision')!;
  expect(await recorded(decisionId)).toEqual({ allow: true, status: 200 });
});

it('still denies behind cors and helmet: 403 problem+json with their headers, recorded, nothing forwarded', async () => {
  const before = received();
  const res = await fetch(`${url}/orgs/acme/projects/api`, {
    method: 'DELETE',
    headers: { origin: ORIGIN, authorization: `Bearer ${erin}` },
  });
  expect(res.status).toBe(403);
  expect(res.headers.get('content-type')).toBe('application/problem+json');
  expect(res.headers.get('access-control-allow-origin')).toBe(ORIGIN);
  expect(res.headers.get('x-content-type-options')).toBe('nosniff');
  expect(await recorded(res.headers.get('x-portcullis-decision')!)).toEqual({ allow: false, status: 403 });
  expect(received()).toBe(before);
});

it('answers 401 to a request without a token, whatever cors allows', async () => {
  const res = await fetch(`${url}/orgs/acme/projects/api`, { headers: { origin: ORIGIN } });
  expect(res.status).toBe(401);
  expect(res.headers.get('www-authenticate')).toMatch(/^Bearer realm="portcullis"/);
  expect(res.headers.get('access-control-allow-origin')).toBe(ORIGIN);
});

it('serves the admin port on its own', async () => {
  expect((await fetch(`${gate.adminUrl}/healthz`)).status).toBe(200);
});

it('answers 503 once closed, while the app around it still serves', async () => {
  await gate.close();
  const before = received();
  const res = await fetch(`${url}/orgs/acme/projects/api`, { headers: { origin: ORIGIN, authorization: `Bearer ${alice}` } });
  expect(res.status).toBe(503);
  expect(((await res.json()) as { detail: string }).detail).toBe('the gateway is shutting down');
  expect(res.headers.get('access-control-allow-origin')).toBe(ORIGIN);
  expect(received()).toBe(before);
});
