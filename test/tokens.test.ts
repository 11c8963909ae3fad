// Tokens through a real gateway: the token rules (exp, lifetime, typ), OpenID Connect
// discovery against an identity provider on loopback that serves its metadata and key set
// over HTTP, readiness while that provider is away, key rotation, and what a 401 logs.
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { expect } from '@jest/globals';
import type { JWK } from 'jose';
import pino from 'pino';
import { seedDirectory } from './support/directory-fixtures';
import { startHarness, type Harness } from './support/gateway-harness';
import { createTestDatabase, type TestDatabase } from './support/test-database';
import { AUDIENCE, createTokenIssuer, ISSUER, type TokenIssuer } from './support/token-issuer';
import { waitFor } from './support/wait-for';

let dir: string;
let database: TestDatabase;
let current: TokenIssuer; // the provider's signing key
let next: TokenIssuer; // the key it rotates in
const harnesses: Harness[] = [];
const providers: Provider[] = [];

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'portcullis-tokens-'));
  database = await createTestDatabase();
  await seedDirectory(database.db);
  current = await createTokenIssuer(await mkdtemp(path.join(dir, 'current-')), 'key-2026-11');
  next = await createTokenIssuer(await mkdtemp(path.join(dir, 'next-')), 'key-2026-12');
});
afterEach(async () => {
  await Promise.all(harnesses.splice(0).map((h) => h.close()));
  await Promise.all(providers.splice(0).map((provider) => provider.stop()));
});
afterAll(async () => {
  await database?.drop();
  await rm(dir, { recursive: true, force: true });
});

async function gateway(auth: Record<string, unknown>, logger?: pino.Logger): Promise<Harness> {
  const h = await startHarness(
    { auth: { audience: AUDIENCE, algorithms: ['ES256'], clock_tolerance_s: 5, ...auth } },
    { database, logger },
  );
  harnesses.push(h);
  return h;
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

async function readiness(h: Harness): Promise<{ status: number; checks: Record<string, string> }> {
  const res = await fetch(`${h.gateway.adminUrl}/readyz`);
  return { status: res.status, checks: ((await res.json()) as { checks: Record<string, string> }).checks };
}

/** Polls /readyz until `accept` holds; the last answer is in the timeout message. */
async function readinessWhen(
  h: Harness,
  accept: (ready: Awaited<ReturnType<typeof readiness>>) => boolean,
  timeoutMs: number,
): ReturnType<typeof readiness> {
  let last: Awaited<ReturnType<typeof readiness>> | undefined;
  return waitFor(
    async () => {
      last = await readiness(h);
      return accept(last) && last;
    },
    { timeoutMs, everyMs: 100, what: () => `readiness; last: ${JSON.stringify(last)}` },
  );
}

/** An identity provider on loopback: `/.well-known/openid-configuration` and `/jwks`. */
interface Provider {
  origin: string;
  keys: JWK[];
  /** The `issuer` its metadata claims (default: its origin). */
  metadataIssuer: string | undefined;
  jwksStatus: number;
  jwksRequests: number;
  start(): Promise<void>;
  stop(): Promise<void>;
}

async function provider(keys: JWK[]): Promise<Provider> {
  const sockets = new Set<import('node:net').Socket>();
  const server = http.createServer((req, res) => {
    res.setHeader('content-type', 'application/json');
    if (req.url === '/.well-known/openid-configuration') {
      res.end(
        JSON.stringify({
          issuer: state.metadataIssuer ?? state.origin,
          jwks_uri: `${state.origin}/jwks`,
          id_token_signing_alg_values_supported: ['ES256'],
        }),
      );
    } else if (req.url === '/jwks') {
      state.jwksRequests += 1;
      res.statusCode = state.jwksStatus;
      res.end(state.jwksStatus === 200 ? JSON.stringify({ keys: state.keys }) : '{"error":"unavailable"}');
    } else {
      res.statusCode = 404;
      res.end();
    }
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  let port = 0;
  const state: Provider = {
    origin: '',
    keys,
    metadataIssuer: undefined,
    jwksStatus: 200,
    jwksRequests: 0,
    start: () =>
      new Promise<void>((resolve) =>
        server.listen(port, '127.0.0.1', () => {
          port = (server.address() as AddressInfo).port;
          state.origin = `http://127.0.0.1:${port}`;
          resolve();
        }),
      ),
    stop: () =>
      new Promise<void>((resolve) => {
        if (!server.listening) return resolve();
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
  await state.start();
  providers.push(state);
  return state;
}

describe('the token rules at the gateway', () => {
  it('refuses a token without exp, one that lives longer than auth.max_token_lifetime_s, and ID or logout token types', async () => {
    const h = await gateway({ issuer: ISSUER, jwks_file: current.jwksFile, max_token_lifetime_s: 3600 });
    const get = async (options: Parameters<TokenIssuer['sign']>[2]) => {
      const res = await h.request('/orgs/acme', { headers: bearer(await current.sign('alice|sub', {}, options)) });
      return { status: res.status, detail: res.status === 200 ? '' : ((await res.json()) as { detail: string }).detail };
    };
    expect(await get({ expiresIn: null })).toEqual({ status: 401, detail: 'token has no "exp" claim' });
    expect(await get({ expiresIn: '61m' })).toEqual({ status: 401, detail: 'token lifetime exceeds auth.max_token_lifetime_s (3600 s)' });
    expect(await get({ typ: 'logout+jwt' })).toEqual({ status: 401, detail: 'token type "logout+jwt" is not accepted' });
    expect(await get({ typ: 'application/id_token+jwt' })).toEqual({
      status: 401,
      detail: 'token type "application/id_token+jwt" is not accepted',
    });

    expect(await get({ expiresIn: '60m' })).toEqual({ status: 200, detail: '' });
    expect(await get({ typ: 'application/at+jwt' })).toEqual({ status: 200, detail: '' });
    expect(await get({ typ: null })).toEqual({ status: 200, detail: '' });
  });

  it('logs an issuer mismatch at warn with both values, once per value per minute, and 401s without a stack trace', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    });
    const h = await gateway({ issuer: ISSUER, jwks_file: current.jwksFile }, pino({ level: 'info' }, sink));
    const trailingSlash = await current.sign('alice|sub', {}, { issuer: `${ISSUER}/` });
    for (let attempt = 0; attempt < 3; attempt += 1)
      expect((await h.request('/orgs/acme', { headers: bearer(trailingSlash) })).status).toBe(401);
    expect((await h.request('/orgs/acme', { headers: bearer(await current.sign('alice|sub', {}, { audience: 'account' })) })).status).toBe(
      401,
    );
    expect((await h.request('/orgs/acme')).status).toBe(401);

    const warnings = lines.filter((line) => line.level === 40 && 'claim' in line);
    expect(warnings.map(({ claim, expected, received }) => ({ claim, expected, received }))).toEqual([
      { claim: 'iss', expected: ISSUER, received: `${ISSUER}/` },
      { claim: 'aud', expected: AUDIENCE, received: 'account' },
    ]);
    const denials = lines.filter((line) => line.msg === 'request denied');
    expect(denials).toHaveLength(5);
    for (const denial of denials) {
      expect(denial).not.toHaveProperty('err');
      expect(JSON.stringify(denial)).not.toMatch(/\n\s+at /);
    }
    expect(denials.map((denial) => denial.reason)).toEqual([
      'token issuer is not trusted',
      'token issuer is not trusted',
      'token issuer is not trusted',
      'token audience is not accepted',
      'missing bearer token',
    ]);
  });
});

describe('OpenID Connect discovery', () => {
  it('reads the key set named by <issuer>/.well-known/openid-configuration and reports ready', async () => {
    const idp = await provider([current.jwk]);
    const h = await gateway({ issuer: idp.origin, discovery: true });
    expect(await readiness(h)).toMatchObject({ status: 200, checks: { signing_keys: 'ok' } });
    const res = await h.request('/orgs/acme', { headers: bearer(await current.sign('alice|sub', {}, { issuer: idp.origin })) });
    expect(res.status).toBe(200);
    expect(idp.jwksRequests).toBe(1);
  });

  it('refuses a document whose issuer is not exactly auth.issuer: not ready, naming both, and every token 401', async () => {
    const idp = await provider([current.jwk]);
    idp.metadataIssuer = `${idp.origin}/`;
    const h = await gateway({ issuer: idp.origin, discovery: true });
    const ready = await readiness(h);
    expect(ready.status).toBe(503);
    expect(ready.checks.signing_keys).toBe(
      `auth.discovery: ${idp.origin}/.well-known/openid-configuration: its issuer "${idp.origin}/" does not equal auth.issuer "${idp.origin}"`,
    );
    const res = await h.request('/orgs/acme', { headers: bearer(await current.sign('alice|sub', {}, { issuer: idp.origin })) });
    expect(res.status).toBe(401);
    expect(idp.jwksRequests).toBe(0);
  });

  it('serves while the provider is unreachable (401, /readyz 503 naming why) and becomes ready when it comes back', async () => {
    const idp = await provider([current.jwk]);
    await idp.stop();
    const h = await gateway({ issuer: idp.origin, discovery: true });
    const token = await current.sign('alice|sub', {}, { issuer: idp.origin });

    const down = await readiness(h);
    expect(down.status).toBe(503);
    expect(down.checks.signing_keys).toMatch(
      new RegExp(`^auth\\.discovery: ${idp.origin}/\\.well-known/openid-configuration: connect ECONNREFUSED`),
    );
    expect((await fetch(`${h.gateway.adminUrl}/healthz`)).status).toBe(200);
    const refused = await h.request('/orgs/acme', { headers: bearer(token) });
    expect(refused.status).toBe(401);
    expect(((await refused.json()) as { detail: string }).detail).toMatch(/signing keys of the identity provider are unavailable/);

    await idp.start();
    idp.jwksStatus = 503; // discovery answers, the key set does not yet
    const noKeys = await readinessWhen(h, (ready) => /could not be fetched/.test(ready.checks.signing_keys ?? ''), 10_000);
    expect(noKeys).toEqual({
      status: 503,
      checks: expect.objectContaining({
        signing_keys: `the signing keys could not be fetched from ${idp.origin}/jwks: Expected 200 OK from the JSON Web Key Set HTTP response`,
      }),
    });

    idp.jwksStatus = 200;
    await readinessWhen(h, (ready) => ready.status === 200, 20_000);
    expect((await h.request('/orgs/acme', { headers: bearer(token) })).status).toBe(200);
  }, 40_000);
});

describe('key rotation', () => {
  it('accepts a rotated-in kid after at most auth.jwks_cooldown_s, with one refetch however many tokens ask', async () => {
    const idp = await provider([current.jwk]);
    const cooldownMs = 3000;
    const h = await gateway({ issuer: ISSUER, jwks_url: `${idp.origin}/jwks`, jwks_cooldown_s: cooldownMs / 1000 });
    expect((await h.request('/orgs/acme', { headers: bearer(await current.sign('alice|sub')) })).status).toBe(200);
    expect(idp.jwksRequests).toBe(1);

    idp.keys = [current.jwk, next.jwk];
    const fresh = await next.sign('alice|sub');
    let refusals = 0;
    await waitFor(
      async () => {
        const statuses = (await Promise.all(Array.from({ length: 10 }, () => h.request('/orgs/acme', { headers: bearer(fresh) })))).map(
          (res) => res.status,
        );
        refusals += statuses.filter((status) => status === 401).length;
        return statuses.every((status) => status === 200);
      },
      { timeoutMs: cooldownMs + 2000, everyMs: 100, what: 'the new key to be taken in' },
    );
    // Refused only while the start-up fetch was still cooling down, then one refetch took it in.
    expect(refusals).toBeGreaterThan(0);
    expect(idp.jwksRequests).toBe(2);

    // Unknown kids cannot make the gateway hammer the provider.
    const strangers = await Promise.all(Array.from({ length: 30 }, (_, index) => createTokenIssuer(dir, `unknown-${index}`)));
    const statuses = await Promise.all(
      strangers.map(async (stranger) => (await h.request('/orgs/acme', { headers: bearer(await stranger.sign('alice|sub')) })).status),
    );
    expect(statuses.every((status) => status === 401)).toBe(true);
    expect(idp.jwksRequests).toBe(2);
  }, 20_000);
});
