import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { CompactSign, exportJWK, exportSPKI, generateKeyPair, SignJWT, type JWK, type JWTPayload, type KeyLike } from 'jose';
import type { PortcullisConfig } from '../config/config-schema';
import { waitFor } from '../../test/support/wait-for';
import { AuthenticationError } from '../base/errors';
import { JwtAuthenticator } from './jwt-authenticator';

type Alg = 'RS256' | 'ES256' | 'EdDSA';
interface SigningKey {
  alg: Alg;
  kid: string;
  privateKey: KeyLike;
  publicKey: KeyLike;
  jwk: JWK;
}

const ISSUER = 'https://id.example.test';
const AUDIENCE = 'portcullis';
const T0 = Date.UTC(2031, 0, 1, 12, 0, 0); // whole second
const T0_S = T0 / 1000;

let dir: string;
let jwksFile: string;
const signers = {} as Record<Alg, SigningKey>;
let outsider: SigningKey; // a key the identity provider never published

async function signingKey(alg: Alg, kid: string): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, alg === 'EdDSA' ? { crv: 'Ed25519' } : undefined);
  return { alg, kid, privateKey, publicKey, jwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } };
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'portcullis-jwt-'));
  signers.RS256 = await signingKey('RS256', 'rsa-1');
  signers.ES256 = await signingKey('ES256', 'ec-1');
  signers.EdDSA = await signingKey('EdDSA', 'ed-1');
  outsider = await signingKey('ES256', 'attacker-1');
  jwksFile = path.join(dir, 'jwks.json');
  await writeFile(jwksFile, JSON.stringify({ keys: Object.values(signers).map((key) => key.jwk) }));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function authConfig(overrides: Partial<PortcullisConfig['auth']> = {}): PortcullisConfig['auth'] {
  return {
    issuer: ISSUER,
    audience: AUDIENCE,
    jwks_file: jwksFile,
    discovery: false,
    algorithms: ['RS256', 'ES256', 'EdDSA'],
    clock_tolerance_s: 30,
    max_token_lifetime_s: 86_400,
    token_types: [null, 'JWT', 'at+jwt'],
    jwks_cache_max_age_s: 600,
    jwks_cooldown_s: 30,
    jwks_timeout_ms: 2000,
    token_cache_ttl_s: 300,
    ...overrides,
  };
}

function claims(overrides: JWTPayload = {}): JWTPayload {
  return { iss: ISSUER, aud: AUDIENCE, sub: 'user-123', iat: T0_S, exp: T0_S + 300, ...overrides };
}

function sign(key: SigningKey, payload: JWTPayload = claims(), header: Record<string, unknown> = {}): Promise<string> {
  return new SignJWT(payload).setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'JWT', ...header }).sign(key.privateKey);
}

const b64 = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

/** A clock the tests move; starts at T0. */
function testClock() {
  let now = T0;
  return { now: () => now, set: (ms: number) => (now = ms), advance: (ms: number) => (now += ms) };
}

async function fileAuthenticator(overrides: Partial<PortcullisConfig['auth']> = {}, clock = testClock()) {
  return JwtAuthenticator.create(authConfig(overrides), { now: clock.now });
}

async function rejection(promise: Promise<unknown>): Promise<AuthenticationError> {
  const error = await promise.then(
    () => undefined,
    (thrown: unknown) => thrown,
  );
  expect(error).toBeInstanceOf(AuthenticationError);
  return error as AuthenticationError;
}

/** Rejects with exactly `message`, and the message never repeats the token. */
async function expectRejected(
  authenticator: JwtAuthenticator,
  header: string | undefined,
  message: string | RegExp,
  bearerError: string | null = 'invalid_token',
) {
  const error = await rejection(authenticator.authenticate(header));
  if (typeof message === 'string') expect(error.message).toBe(message);
  else expect(error.message).toMatch(message);
  expect(error.bearerError).toBe(bearerError);
  const token = header?.split(' ').pop();
  if (token && token.length > 8) {
    expect(error.message).not.toContain(token);
    for (const segment of token.split('.').filter((part) => part.length > 8)) expect(error.message).not.toContain(segment);
  }
  return error;
}

describe('JwtAuthenticator with a JWKS file', () => {
  it.each(['RS256', 'ES256', 'EdDSA'] as const)('accepts a valid %s token and returns its subject, expiry and claims', async (alg) => {
    const authenticator = await fileAuthenticator();
    const principal = await authenticator.authenticate(`Bearer ${await sign(signers[alg], claims({ email: 'a@example.test' }))}`);
    expect(principal.sub).toBe('user-123');
    expect(principal.expiresAt).toBe(T0_S + 300);
    expect(principal.claims).toMatchObject({ iss: ISSUER, aud: AUDIENCE, email: 'a@example.test' });
    expect(Object.isFrozen(principal.claims)).toBe(true);
  });

  it('carries the OIDC profile claims (email, email_verified, name) only when they have their standard types', async () => {
    const authenticator = await fileAuthenticator();
    const profile = await authenticator.authenticate(
      `Bearer ${await sign(signers.ES256, claims({ email: 'A@example.test', email_verified: true, name: 'Ann' }))}`,
    );
    expect(profile).toMatchObject({ email: 'A@example.test', emailVerified: true, name: 'Ann' });
    // A string "true" is not a verified address; an empty e-mail or name is no claim.
    const odd = await authenticator.authenticate(
      `Bearer ${await sign(signers.ES256, claims({ email: '', email_verified: 'true', name: 7 }))}`,
    );
    for (const field of ['email', 'emailVerified', 'name']) expect(odd).not.toHaveProperty(field);
  });

  it('accepts the scheme in any case and an audience list that contains the configured one', async () => {
    const authenticator = await fileAuthenticator({ audience: ['other', AUDIENCE] });
    const token = await sign(signers.ES256, claims({ aud: ['billing', AUDIENCE] }));
    await expect(authenticator.authenticate(`bEaReR ${token}`)).resolves.toMatchObject({ sub: 'user-123' });
  });

  it('answers a missing or malformed Authorization header with invalid_request', async () => {
    const authenticator = await fileAuthenticator();
    const token = await sign(signers.ES256);
    await expectRejected(authenticator, undefined, 'missing bearer token', null);
    await expectRejected(authenticator, '', 'missing bearer token', null);
    await expectRejected(
      authenticator,
      'Basic dXNlcjpwYXNzd29yZA==',
      'the Authorization header must use the Bearer scheme',
      'invalid_request',
    );
    await expectRejected(authenticator, `Token ${token}`, 'the Authorization header must use the Bearer scheme', 'invalid_request');
    await expectRejected(authenticator, 'Bearer', /^malformed bearer token/, 'invalid_request');
    await expectRejected(authenticator, `Bearer ${token} ${token}`, /^malformed bearer token/, 'invalid_request');
    await expectRejected(authenticator, `Bearer ${token},${token}`, /^malformed bearer token/, 'invalid_request');
    await expectRejected(
      authenticator,
      `Bearer ${'a'.repeat(4000)}.${'b'.repeat(4000)}.${'c'.repeat(400)}`,
      'bearer token is too long',
      'invalid_request',
    );
  });

  it('rejects a bearer value that is not a compact JWT', async () => {
    const authenticator = await fileAuthenticator();
    await expectRejected(authenticator, 'Bearer opaque-access-token-1234', 'bearer token is not a JWT');
    await expectRejected(authenticator, 'Bearer a.b.c.d.e', 'bearer token is not a JWT');
    await expectRejected(authenticator, `Bearer ${b64('not json')}.${b64(claims())}.c2ln`, 'token is malformed');
  });

  it('refuses an unsigned token (alg: none)', async () => {
    const authenticator = await fileAuthenticator();
    const unsigned = `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims())}.`;
    await expectRejected(authenticator, `Bearer ${unsigned}`, 'algorithm none is not allowed');
  });

  it('refuses an HS256 token whose secret is the RSA public key (algorithm confusion)', async () => {
    const authenticator = await fileAuthenticator();
    const pem = await exportSPKI(signers.RS256.publicKey);
    const forged = await new SignJWT(claims()).setProtectedHeader({ alg: 'HS256', kid: 'rsa-1' }).sign(Buffer.from(pem));
    await expectRejected(authenticator, `Bearer ${forged}`, 'algorithm HS256 is not allowed');
  });

  it('refuses an algorithm the configuration does not list, even with a published key', async () => {
    const authenticator = await fileAuthenticator({ algorithms: ['RS256'] });
    await expect(authenticator.authenticate(`Bearer ${await sign(signers.RS256)}`)).resolves.toBeDefined();
    await expectRejected(authenticator, `Bearer ${await sign(signers.ES256)}`, 'algorithm ES256 is not allowed');
  });

  it('refuses a token whose kid matches no published key', async () => {
    const authenticator = await fileAuthenticator();
    await expectRejected(authenticator, `Bearer ${await sign(outsider)}`, "no key matches the token's kid");
  });

  it('refuses a forged signature under a published kid, and a tampered payload', async () => {
    const authenticator = await fileAuthenticator();
    const forged = await sign({ ...outsider, kid: 'ec-1' });
    await expectRejected(authenticator, `Bearer ${forged}`, 'token signature does not verify');

    const [header, , signature] = (await sign(signers.EdDSA)).split('.');
    const tampered = `${header}.${b64(claims({ sub: 'admin' }))}.${signature}`;
    await expectRejected(authenticator, `Bearer ${tampered}`, 'token signature does not verify');
  });

  it('refuses expired and not-yet-valid tokens', async () => {
    const authenticator = await fileAuthenticator();
    await expectRejected(authenticator, `Bearer ${await sign(signers.ES256, claims({ exp: T0_S - 3600 }))}`, 'token expired');
    await expectRejected(authenticator, `Bearer ${await sign(signers.ES256, claims({ nbf: T0_S + 3600 }))}`, 'token is not valid yet');
  });

  it('applies the clock tolerance exactly at its edges', async () => {
    const authenticator = await fileAuthenticator({ clock_tolerance_s: 30 });
    const bearer = async (payload: JWTPayload) => `Bearer ${await sign(signers.ES256, claims(payload))}`;

    await expect(authenticator.authenticate(await bearer({ exp: T0_S - 29 }))).resolves.toBeDefined();
    await expectRejected(authenticator, await bearer({ exp: T0_S - 30 }), 'token expired');
    await expect(authenticator.authenticate(await bearer({ nbf: T0_S + 30 }))).resolves.toBeDefined();
    await expectRejected(authenticator, await bearer({ nbf: T0_S + 31 }), 'token is not valid yet');
  });

  it('refuses a token from another issuer or for another audience', async () => {
    const authenticator = await fileAuthenticator();
    await expectRejected(
      authenticator,
      `Bearer ${await sign(signers.RS256, claims({ iss: 'https://evil.example.test' }))}`,
      'token issuer is not trusted',
    );
    await expectRejected(
      authenticator,
      `Bearer ${await sign(signers.RS256, claims({ aud: 'another-service' }))}`,
      'token audience is not accepted',
    );
    await expectRejected(authenticator, `Bearer ${await sign(signers.RS256, claims({ iss: undefined }))}`, 'token has no "iss" claim');
  });

  it('refuses a signed payload that is not a JSON object', async () => {
    const authenticator = await fileAuthenticator();
    const key = signers.ES256;
    for (const payload of ['[1,2,3]', '"user-123"', 'not json']) {
      const token = await new CompactSign(Buffer.from(payload)).setProtectedHeader({ alg: key.alg, kid: key.kid }).sign(key.privateKey);
      await expectRejected(authenticator, `Bearer ${token}`, 'token payload is not a JSON object');
    }
  });

  it('requires sub to be a non-empty string', async () => {
    const authenticator = await fileAuthenticator();
    await expectRejected(authenticator, `Bearer ${await sign(signers.ES256, claims({ sub: undefined }))}`, 'token has no "sub" claim');
    await expectRejected(
      authenticator,
      `Bearer ${await sign(signers.ES256, claims({ sub: '' }))}`,
      'token subject must be a non-empty string',
    );
    await expectRejected(
      authenticator,
      `Bearer ${await sign(signers.ES256, { ...claims(), sub: 42 } as unknown as JWTPayload)}`,
      'token subject must be a non-empty string',
    );
  });

  it('refuses a token without exp', async () => {
    const authenticator = await fileAuthenticator();
    await expectRejected(authenticator, `Bearer ${await sign(signers.ES256, claims({ exp: undefined }))}`, 'token has no "exp" claim');
  });

  it('refuses a token whose lifetime exceeds auth.max_token_lifetime_s, counted from iat, or from now without iat', async () => {
    const authenticator = await fileAuthenticator({ max_token_lifetime_s: 3600 });
    const bearer = async (payload: JWTPayload) => `Bearer ${await sign(signers.ES256, claims(payload))}`;
    const tooLong = 'token lifetime exceeds auth.max_token_lifetime_s (3600 s)';

    await expect(authenticator.authenticate(await bearer({ iat: T0_S - 600, exp: T0_S + 3000 }))).resolves.toBeDefined();
    await expectRejected(authenticator, await bearer({ iat: T0_S - 600, exp: T0_S + 3001 }), tooLong);
    await expect(authenticator.authenticate(await bearer({ iat: undefined, exp: T0_S + 3600 }))).resolves.toBeDefined();
    await expectRejected(authenticator, await bearer({ iat: undefined, exp: T0_S + 3601 }), tooLong);
    // An iat in the future cannot make a long-lived token look short.
    await expectRejected(authenticator, await bearer({ iat: T0_S + 7200, exp: T0_S + 7300 }), tooLong);
  });

  it('accepts the default token types in any spelling RFC 8725 allows, and refuses ID and logout tokens', async () => {
    const authenticator = await fileAuthenticator();
    const typed = async (typ: string | undefined) => {
      const key = signers.ES256;
      const header = typ === undefined ? { alg: key.alg, kid: key.kid } : { alg: key.alg, kid: key.kid, typ };
      return `Bearer ${await new SignJWT(claims()).setProtectedHeader(header).sign(key.privateKey)}`;
    };
    for (const typ of [undefined, 'JWT', 'jwt', 'at+jwt', 'AT+JWT', 'application/at+jwt', 'Application/JWT']) {
      await expect(authenticator.authenticate(await typed(typ))).resolves.toMatchObject({ sub: 'user-123' });
    }
    await expectRejected(authenticator, await typed('logout+jwt'), 'token type "logout+jwt" is not accepted');
    await expectRejected(authenticator, await typed('application/logout+jwt'), 'token type "application/logout+jwt" is not accepted');
    await expectRejected(authenticator, await typed('id_token+jwt'), 'token type "id_token+jwt" is not accepted');
    await expectRejected(authenticator, await typed('secevent+jwt'), 'token type "secevent+jwt" is not accepted');
  });

  it('accepts only the configured token types', async () => {
    const authenticator = await fileAuthenticator({ token_types: ['at+jwt'] });
    const key = signers.EdDSA;
    const typed = async (header: Record<string, unknown>) =>
      `Bearer ${await new SignJWT(claims()).setProtectedHeader({ alg: key.alg, kid: key.kid, ...header }).sign(key.privateKey)}`;
    await expect(authenticator.authenticate(await typed({ typ: 'application/AT+JWT' }))).resolves.toBeDefined();
    await expectRejected(authenticator, await typed({ typ: 'JWT' }), 'token type "JWT" is not accepted');
    await expectRejected(authenticator, await typed({}), 'a token without a "typ" header is not accepted');
    await expectRejected(authenticator, await typed({ typ: 42 }), 'token type is not accepted');
  });

  it('rejects a critical header parameter it does not understand', async () => {
    const authenticator = await fileAuthenticator();
    const key = signers.ES256;
    const token = await new SignJWT(claims())
      .setProtectedHeader({ alg: key.alg, kid: key.kid, crit: ['urn:example:binding'], 'urn:example:binding': 'tls' })
      .sign(key.privateKey, { crit: { 'urn:example:binding': true } });
    await expectRejected(authenticator, `Bearer ${token}`, 'token has an unsupported critical header parameter');
  });

  it('refuses to start from a file that is not a JWKS, naming the file', async () => {
    const notJwks = path.join(dir, 'not-jwks.json');
    await writeFile(notJwks, JSON.stringify({ kty: 'OKP', crv: 'Ed25519', x: 'abc' }));
    await expect(JwtAuthenticator.create(authConfig({ jwks_file: notJwks }))).rejects.toThrow(
      `auth.jwks_file ${notJwks}: not a JSON Web Key Set`,
    );

    const notJson = path.join(dir, 'not-json.json');
    await writeFile(notJson, '-----BEGIN PUBLIC KEY-----');
    await expect(JwtAuthenticator.create(authConfig({ jwks_file: notJson }))).rejects.toThrow(
      `auth.jwks_file ${notJson}: cannot be read as JSON`,
    );

    const missing = path.join(dir, 'missing.json');
    await expect(JwtAuthenticator.create(authConfig({ jwks_file: missing }))).rejects.toThrow(`auth.jwks_file ${missing}`);
  });

  it('refuses to start from a JWKS file holding a private key', async () => {
    const privateSet = path.join(dir, 'private-jwks.json');
    await writeFile(privateSet, JSON.stringify({ keys: [{ ...(await exportJWK(signers.EdDSA.privateKey)), kid: 'ed-1' }] }));
    await expect(JwtAuthenticator.create(authConfig({ jwks_file: privateSet }))).rejects.toThrow(/contains a private or symmetric key/);
  });
});

describe('JwtAuthenticator mismatch warnings', () => {
  function capture() {
    const lines: Array<{ fields: Record<string, unknown>; message: string }> = [];
    return { lines, logger: { warn: (fields: Record<string, unknown>, message: string) => lines.push({ fields, message }) } as never };
  }

  it('warns with the expected and received issuer or audience, once per distinct value per minute', async () => {
    const clock = testClock();
    const { lines, logger } = capture();
    const authenticator = await JwtAuthenticator.create(authConfig(), { now: clock.now, logger });
    const bearer = async (payload: JWTPayload) => `Bearer ${await sign(signers.ES256, claims(payload))}`;

    for (let attempt = 0; attempt < 3; attempt += 1)
      await expectRejected(authenticator, await bearer({ iss: `${ISSUER}/` }), 'token issuer is not trusted');
    expect(lines).toEqual([
      { fields: { claim: 'iss', expected: ISSUER, received: `${ISSUER}/` }, message: 'token iss does not match auth.issuer: 401' },
    ]);

    await expectRejected(authenticator, await bearer({ aud: ['account', 'web-client'] }), 'token audience is not accepted');
    await expectRejected(authenticator, await bearer({ iss: 'https://other.example.test' }), 'token issuer is not trusted');
    expect(lines.slice(1).map((line) => line.fields)).toEqual([
      { claim: 'aud', expected: AUDIENCE, received: ['account', 'web-client'] },
      { claim: 'iss', expected: ISSUER, received: 'https://other.example.test' },
    ]);

    clock.advance(59_999);
    await expectRejected(authenticator, await bearer({ iss: `${ISSUER}/` }), 'token issuer is not trusted');
    expect(lines).toHaveLength(3);
    clock.advance(1);
    await expectRejected(authenticator, await bearer({ iss: `${ISSUER}/` }), 'token issuer is not trusted');
    expect(lines).toHaveLength(4);
  });

  it('does not warn for failures that are not a mismatch, nor for tokens whose signature fails', async () => {
    const { lines, logger } = capture();
    const authenticator = await JwtAuthenticator.create(authConfig(), { now: testClock().now, logger });
    await expectRejected(authenticator, `Bearer ${await sign(signers.ES256, claims({ exp: T0_S - 3600 }))}`, 'token expired');
    await expectRejected(
      authenticator,
      `Bearer ${await sign({ ...outsider, kid: 'ec-1' }, claims({ iss: 'https://evil.example.test' }))}`,
      'token signature does not verify',
    );
    expect(lines).toEqual([]);
  });
});

describe('JwtAuthenticator verified-token cache', () => {
  it('serves a second presentation of a token from the cache without verifying again', async () => {
    const authenticator = await fileAuthenticator();
    const header = `Bearer ${await sign(signers.RS256)}`;
    const first = await authenticator.authenticate(header);
    expect(authenticator.cacheStats()).toEqual({ hits: 0, misses: 1, size: 1 });
    const second = await authenticator.authenticate(header);
    expect(second).toBe(first);
    expect(authenticator.cacheStats()).toEqual({ hits: 1, misses: 1, size: 1 });
  });

  it('never serves an entry at or after the token exp', async () => {
    const clock = testClock();
    const authenticator = await fileAuthenticator({ clock_tolerance_s: 0 }, clock);
    const header = `Bearer ${await sign(signers.EdDSA, claims({ exp: T0_S + 10 }))}`;
    await authenticator.authenticate(header);
    clock.advance(9_999);
    await authenticator.authenticate(header);
    expect(authenticator.cacheStats()).toMatchObject({ hits: 1, misses: 1 });

    clock.advance(1);
    await expectRejected(authenticator, header, 'token expired');
    expect(authenticator.cacheStats()).toEqual({ hits: 1, misses: 2, size: 0 });
  });

  it('does not cache a token accepted only thanks to the clock tolerance', async () => {
    const authenticator = await fileAuthenticator({ clock_tolerance_s: 30 });
    const header = `Bearer ${await sign(signers.EdDSA, claims({ exp: T0_S - 5 }))}`;
    await authenticator.authenticate(header);
    await authenticator.authenticate(header);
    expect(authenticator.cacheStats()).toEqual({ hits: 0, misses: 2, size: 0 });
  });

  it('serves a cached token for auth.token_cache_ttl_s by default', async () => {
    const clock = testClock();
    const authenticator = await fileAuthenticator({ token_cache_ttl_s: 2 }, clock);
    const header = `Bearer ${await sign(signers.ES256, claims({ exp: T0_S + 3600 }))}`;
    await authenticator.authenticate(header);
    clock.advance(1_999);
    await authenticator.authenticate(header);
    expect(authenticator.cacheStats()).toMatchObject({ hits: 1, misses: 1 });
    clock.advance(1);
    await authenticator.authenticate(header);
    expect(authenticator.cacheStats()).toMatchObject({ hits: 1, misses: 2 });
  });

  it('re-verifies after the cache TTL even when the token lives longer', async () => {
    const clock = testClock();
    const authenticator = await JwtAuthenticator.create(authConfig(), { now: clock.now, cacheTtlMs: 1000 });
    const header = `Bearer ${await sign(signers.ES256, claims({ exp: T0_S + 3600 }))}`;
    await authenticator.authenticate(header);
    clock.advance(999);
    await authenticator.authenticate(header);
    clock.advance(1);
    await authenticator.authenticate(header);
    expect(authenticator.cacheStats()).toEqual({ hits: 1, misses: 2, size: 1 });
  });

  it('verifies a token presented by many requests at once only once (single flight)', async () => {
    const authenticator = await fileAuthenticator();
    const header = `Bearer ${await sign(signers.ES256)}`;
    const principals = await Promise.all(Array.from({ length: 20 }, () => authenticator.authenticate(header)));
    // Each verification builds its own principal: one object means one verification.
    expect(new Set(principals).size).toBe(1);
    expect(authenticator.cacheStats()).toEqual({ hits: 0, misses: 20, size: 1 });
  });

  it('shares a failed verification with the requests waiting on it, and verifies again afterwards', async () => {
    const authenticator = await fileAuthenticator();
    const header = `Bearer ${await sign(outsider)}`;
    const results = await Promise.allSettled(Array.from({ length: 5 }, () => authenticator.authenticate(header)));
    const reasons = results.map((result) => (result.status === 'rejected' ? (result.reason as unknown) : undefined));
    expect(new Set(reasons).size).toBe(1);
    expect(reasons[0]).toBeInstanceOf(AuthenticationError);
    await expectRejected(authenticator, header, "no key matches the token's kid");
    expect(authenticator.cacheStats()).toEqual({ hits: 0, misses: 6, size: 0 });
  });

  it('does not coalesce when caching is disabled: every presentation is verified', async () => {
    const authenticator = await JwtAuthenticator.create(authConfig(), { now: testClock().now, cacheTtlMs: 0 });
    const header = `Bearer ${await sign(signers.ES256)}`;
    const principals = await Promise.all(Array.from({ length: 3 }, () => authenticator.authenticate(header)));
    expect(new Set(principals).size).toBe(3);
  });

  it('does not cache failures', async () => {
    const authenticator = await fileAuthenticator();
    const header = `Bearer ${await sign(outsider)}`;
    await expectRejected(authenticator, header, "no key matches the token's kid");
    await expectRejected(authenticator, header, "no key matches the token's kid");
    expect(authenticator.cacheStats()).toEqual({ hits: 0, misses: 2, size: 0 });
  });

  it('bounds the number of entries', async () => {
    const authenticator = await JwtAuthenticator.create(authConfig(), { now: testClock().now, cacheMaxEntries: 2 });
    for (const sub of ['a', 'b', 'c']) await authenticator.authenticate(`Bearer ${await sign(signers.ES256, claims({ sub }))}`);
    expect(authenticator.cacheStats().size).toBe(2);
  });
});

interface LoopbackServer {
  url: string;
  requests: number;
  respond: (req: http.IncomingMessage, res: http.ServerResponse) => void;
  close: () => Promise<void>;
}

async function loopbackServer(respond: LoopbackServer['respond']): Promise<LoopbackServer> {
  const sockets = new Set<import('node:net').Socket>();
  const server = http.createServer((req, res) => {
    state.requests += 1;
    state.respond(req, res);
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const state: LoopbackServer = {
    url: `http://127.0.0.1:${port}/.well-known/jwks.json`,
    requests: 0,
    respond,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
  return state;
}

const serveKeys = (keys: JWK[]) => (_req: http.IncomingMessage, res: http.ServerResponse) => {
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ keys }));
};

const servers: LoopbackServer[] = [];
const authenticators: JwtAuthenticator[] = [];
async function server(respond: LoopbackServer['respond']) {
  const started = await loopbackServer(respond);
  servers.push(started);
  return started;
}
async function remoteAuthenticator(url: string, overrides: Partial<PortcullisConfig['auth']> = {}, options = {}) {
  const authenticator = await JwtAuthenticator.create(authConfig({ jwks_file: undefined, jwks_url: url, ...overrides }), {
    now: testClock().now,
    ...options,
  });
  authenticators.push(authenticator);
  return authenticator;
}
const allKeys = () => Object.values(signers).map((key) => key.jwk);

afterEach(async () => {
  for (const authenticator of authenticators.splice(0)) authenticator.close();
  await Promise.all(servers.splice(0).map((started) => started.close()));
});

describe('JwtAuthenticator with a remote JWKS', () => {
  it('fetches the key set once and verifies tokens of every algorithm with it', async () => {
    const jwks = await server(serveKeys(allKeys()));
    const authenticator = await remoteAuthenticator(jwks.url);
    for (const key of Object.values(signers)) {
      await expect(authenticator.authenticate(`Bearer ${await sign(key)}`)).resolves.toMatchObject({ sub: 'user-123' });
    }
    expect(jwks.requests).toBe(1);
  });

  it('ignores jku, x5u and embedded jwk headers: it fetches nothing from them and trusts no key in them', async () => {
    const jwks = await server(serveKeys(allKeys()));
    const attackerKeys = await server(serveKeys([outsider.jwk]));
    const authenticator = await remoteAuthenticator(jwks.url);
    const attackerHeaders = { jku: attackerKeys.url, x5u: attackerKeys.url, jwk: outsider.jwk };

    await expectRejected(authenticator, `Bearer ${await sign(outsider, claims(), attackerHeaders)}`, "no key matches the token's kid");
    // A genuine token carrying the same headers verifies against the configured key set only.
    await expect(authenticator.authenticate(`Bearer ${await sign(signers.ES256, claims(), attackerHeaders)}`)).resolves.toBeDefined();
    expect(attackerKeys.requests).toBe(0);
  });

  it('fetches the key set at most once for a flood of tokens with unknown kids (cooldown)', async () => {
    const jwks = await server(serveKeys(allKeys()));
    const authenticator = await remoteAuthenticator(jwks.url);
    const unknownKid = (index: number) => sign({ ...outsider, kid: `unknown-${index}` }).then((token) => `Bearer ${token}`);
    const headers = await Promise.all(Array.from({ length: 50 }, (_, index) => unknownKid(index)));

    const concurrent = await Promise.all(headers.map((header) => rejection(authenticator.authenticate(header))));
    expect(concurrent.every((error) => error.message === "no key matches the token's kid")).toBe(true);
    for (const header of headers) await expectRejected(authenticator, header, "no key matches the token's kid");
    expect(jwks.requests).toBeGreaterThanOrEqual(1);
    expect(jwks.requests).toBeLessThanOrEqual(2);
  });

  it('picks up a rotated-in key on the first unknown kid after the cooldown', async () => {
    const jwks = await server(serveKeys([signers.RS256.jwk]));
    const authenticator = await remoteAuthenticator(jwks.url, { jwks_cooldown_s: 1 });
    await authenticator.authenticate(`Bearer ${await sign(signers.RS256)}`);

    jwks.respond = serveKeys(allKeys());
    await expectRejected(authenticator, `Bearer ${await sign(signers.EdDSA)}`, "no key matches the token's kid");
    expect(jwks.requests).toBe(1);

    await new Promise((resolve) => setTimeout(resolve, 1100));
    await expect(authenticator.authenticate(`Bearer ${await sign(signers.EdDSA)}`)).resolves.toBeDefined();
    expect(jwks.requests).toBe(2);
  });

  it('answers 401 when the key set cannot be fetched and none is cached, without refetching per request', async () => {
    const jwks = await server((_req, res) => {
      res.statusCode = 503;
      res.end('down');
    });
    const authenticator = await remoteAuthenticator(jwks.url);
    for (let attempt = 0; attempt < 20; attempt += 1) {
      const error = await expectRejected(
        authenticator,
        `Bearer ${await sign(signers.ES256)}`,
        /signing keys of the identity provider are unavailable/,
        null,
      );
      expect(error.status).toBe(401);
    }
    expect(jwks.requests).toBe(1);
  });

  it.each([
    ['never answers', (_req: http.IncomingMessage, _res: http.ServerResponse) => undefined],
    [
      'stalls in the middle of the body',
      (_req: http.IncomingMessage, res: http.ServerResponse) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.write('{"keys": [');
      },
    ],
  ])('answers 401 after a bounded wait when the JWKS endpoint %s', async (_name, respond) => {
    const jwks = await server(respond);
    const authenticator = await remoteAuthenticator(jwks.url, { jwks_timeout_ms: 300 });
    const started = Date.now();
    await expectRejected(
      authenticator,
      `Bearer ${await sign(signers.ES256)}`,
      /signing keys of the identity provider are unavailable/,
      null,
    );
    expect(Date.now() - started).toBeLessThan(1500);
  });

  it('keeps verifying with the last good key set while the endpoint is down', async () => {
    const jwks = await server(serveKeys(allKeys()));
    const authenticator = await remoteAuthenticator(jwks.url, { jwks_cache_max_age_s: 1 });
    await authenticator.authenticate(`Bearer ${await sign(signers.ES256)}`);

    jwks.respond = (_req, res) => {
      res.statusCode = 500;
      res.end();
    };
    await new Promise((resolve) => setTimeout(resolve, 1100));
    await expect(authenticator.authenticate(`Bearer ${await sign(signers.EdDSA)}`)).resolves.toBeDefined();
    await expectRejected(authenticator, `Bearer ${await sign(outsider)}`, "no key matches the token's kid");
    expect(jwks.requests).toBe(2);
  });
});

describe('JwtAuthenticator key set availability', () => {
  it('fetches the key set at start and reports ok', async () => {
    const jwks = await server(serveKeys(allKeys()));
    const authenticator = await remoteAuthenticator(jwks.url);
    expect(jwks.requests).toBe(1);
    expect(authenticator.keySetStatus()).toBe('ok');
  });

  it('names the reason while no key set could be fetched, keeps retrying, and is ok once one arrives', async () => {
    let healthy = false;
    const jwks = await server((req, res) => (healthy ? serveKeys(allKeys())(req, res) : ((res.statusCode = 503), res.end('down'))));
    const authenticator = await remoteAuthenticator(jwks.url);
    expect(authenticator.keySetStatus()).toBe(
      `the signing keys could not be fetched from ${jwks.url}: Expected 200 OK from the JSON Web Key Set HTTP response`,
    );
    await expectRejected(
      authenticator,
      `Bearer ${await sign(signers.ES256)}`,
      /signing keys of the identity provider are unavailable/,
      null,
    );

    await waitFor(() => jwks.requests >= 2, { timeoutMs: 3000, what: 'a background retry' }); // no request needed
    healthy = true;
    await waitFor(() => authenticator.keySetStatus() === 'ok', { timeoutMs: 6000, what: 'the key set status to be ok' });
    await expect(authenticator.authenticate(`Bearer ${await sign(signers.ES256)}`)).resolves.toMatchObject({ sub: 'user-123' });
  }, 15_000);

  it('names a refused connection', async () => {
    const jwks = await server(serveKeys(allKeys()));
    await jwks.close();
    const authenticator = await remoteAuthenticator(jwks.url);
    expect(authenticator.keySetStatus()).toMatch(
      /^the signing keys could not be fetched from http:\/\/127\.0\.0\.1:\d+\/\.well-known\/jwks\.json: connect ECONNREFUSED/,
    );
  });

  it('stops retrying once closed', async () => {
    const jwks = await server((_req, res) => ((res.statusCode = 500), res.end()));
    const authenticator = await remoteAuthenticator(jwks.url);
    authenticator.close();
    await new Promise((resolve) => setTimeout(resolve, 1300));
    expect(jwks.requests).toBe(1);
  });

  it('is always ok with a key file', async () => {
    expect((await fileAuthenticator()).keySetStatus()).toBe('ok');
  });
});

describe('JwtAuthenticator with OpenID Connect discovery', () => {
  /** A provider on loopback: its issuer is its own origin (plus `issuerPath`). */
  async function provider(metadata: (origin: string) => Record<string, unknown>, issuerPath = '') {
    const paths: string[] = [];
    const started = await server((req, res) => {
      paths.push(req.url ?? '');
      const origin = `http://127.0.0.1:${(req.socket.localPort ?? 0).toString()}`;
      if (req.url === `${issuerPath}/.well-known/openid-configuration`) {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify(metadata(origin)));
      } else if (req.url === '/keys') {
        serveKeys(allKeys())(req, res);
      } else {
        res.statusCode = 404;
        res.end();
      }
    });
    const origin = new URL(started.url).origin;
    return { origin, issuer: `${origin}${issuerPath}`, paths };
  }
  async function discovering(issuer: string) {
    const authenticator = await JwtAuthenticator.create(authConfig({ jwks_file: undefined, discovery: true, issuer }), {
      now: testClock().now,
    });
    authenticators.push(authenticator);
    return authenticator;
  }

  it('takes jwks_uri from <issuer>/.well-known/openid-configuration and verifies with it', async () => {
    const idp = await provider((origin) => ({ issuer: `${origin}/realms/main`, jwks_uri: `${origin}/keys` }), '/realms/main');
    const authenticator = await discovering(idp.issuer);
    expect(authenticator.keySetStatus()).toBe('ok');
    await expect(authenticator.authenticate(`Bearer ${await sign(signers.RS256, claims({ iss: idp.issuer }))}`)).resolves.toMatchObject({
      sub: 'user-123',
    });
    expect(idp.paths).toEqual(['/realms/main/.well-known/openid-configuration', '/keys']);
  });

  it('drops one terminating slash of the issuer to find the document, but still requires the exact issuer', async () => {
    const idp = await provider((origin) => ({ issuer: `${origin}/`, jwks_uri: `${origin}/keys` }));
    const authenticator = await discovering(`${idp.origin}/`);
    expect(authenticator.keySetStatus()).toBe('ok');
    expect(idp.paths[0]).toBe('/.well-known/openid-configuration');
  });

  it('refuses a document whose issuer is not exactly auth.issuer, and trusts no token meanwhile', async () => {
    const idp = await provider((origin) => ({ issuer: `${origin}/`, jwks_uri: `${origin}/keys` }));
    const authenticator = await discovering(idp.origin);
    expect(authenticator.keySetStatus()).toBe(
      `auth.discovery: ${idp.origin}/.well-known/openid-configuration: its issuer "${idp.origin}/" does not equal auth.issuer "${idp.origin}"`,
    );
    await expectRejected(
      authenticator,
      `Bearer ${await sign(signers.ES256, claims({ iss: idp.origin }))}`,
      /signing keys of the identity provider are unavailable/,
      null,
    );
    expect(idp.paths).not.toContain('/keys');
  });

  it('refuses a jwks_uri that is plain http off loopback, a document without one, and one that is not JSON', async () => {
    const insecure = await provider((origin) => ({ issuer: origin, jwks_uri: 'http://keys.example.com/jwks' }));
    expect((await discovering(insecure.issuer)).keySetStatus()).toMatch(
      /jwks_uri must be an https URL \(http only on loopback\): http:\/\/keys\.example\.com\/jwks$/,
    );
    const none = await provider((origin) => ({ issuer: origin }));
    expect((await discovering(none.issuer)).keySetStatus()).toMatch(/openid-configuration: has no jwks_uri$/);
    const broken = await server((_req, res) => res.end('<html>'));
    expect((await discovering(new URL(broken.url).origin)).keySetStatus()).toMatch(/openid-configuration: not JSON$/);
  });
});
