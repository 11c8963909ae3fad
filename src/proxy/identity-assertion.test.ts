import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { calculateJwkThumbprint, createLocalJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify } from 'jose';
import type { PortcullisConfig } from '../config/config-schema';
import { IdentityAssertionSigner, type AssertionClaims } from './identity-assertion';

const T0 = Date.UTC(2031, 0, 1, 12, 0, 0);
const config = (overrides: Partial<PortcullisConfig['assertion']> = {}): PortcullisConfig['assertion'] => ({
  issuer: 'portcullis-test',
  ttl_s: 60,
  ...overrides,
});
const alice: AssertionClaims = { userId: '7f1c1f52-4d43-4c1e-9d5b-2b1b3f0c9a10', sub: 'idp|alice', org: 'acme', service: 'projects' };

function testClock() {
  let now = T0;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

/** What an upstream does: verify against the published JWKS, for its own audience. */
async function verifyAsUpstream(signer: IdentityAssertionSigner, token: string, service: string, now = T0) {
  return jwtVerify(token, createLocalJWKSet(signer.jwks()), {
    issuer: 'portcullis-test',
    audience: `portcullis:${service}`,
    algorithms: ['EdDSA', 'ES256'],
    currentDate: new Date(now),
  });
}

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'portcullis-assertion-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function keyFile(name: string, contents: string): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(file, contents);
  return file;
}

describe('IdentityAssertionSigner', () => {
  it('signs an assertion an upstream verifies with the published JWKS, carrying the specified claims', async () => {
    const signer = await IdentityAssertionSigner.create(config(), { now: testClock().now });
    const token = await signer.assertionFor(alice);
    const { payload, protectedHeader } = await verifyAsUpstream(signer, token, 'projects');

    expect(protectedHeader).toEqual({ alg: 'EdDSA', kid: signer.kid, typ: 'JWT' });
    expect(payload).toEqual({
      iss: 'portcullis-test',
      aud: 'portcullis:projects',
      sub: alice.userId,
      portcullis_sub: 'idp|alice',
      org: 'acme',
      iat: T0 / 1000,
      exp: T0 / 1000 + 60,
    });
  });

  it('omits org for a request that is not org-scoped, and sub when the caller has no user row', async () => {
    const signer = await IdentityAssertionSigner.create(config(), { now: testClock().now });
    const personal = decodeJwt(await signer.assertionFor({ ...alice, org: null, service: 'users' }));
    expect(personal).not.toHaveProperty('org');
    expect(personal.sub).toBe(alice.userId);

    const newcomer = decodeJwt(await signer.assertionFor({ userId: null, sub: 'idp|new', org: null, service: 'organizations' }));
    expect(newcomer).not.toHaveProperty('sub');
    expect(newcomer.portcullis_sub).toBe('idp|new');
  });

  it("copies the verified token's e-mail, e-mail verification and name, and leaves out the absent ones", async () => {
    const signer = await IdentityAssertionSigner.create(config(), { now: testClock().now });
    const profile = { email: 'Alice@Example.com', emailVerified: true, name: 'Alice Liddell' };
    const { payload } = await verifyAsUpstream(signer, await signer.assertionFor({ ...alice, ...profile }), 'projects');
    expect(payload).toMatchObject({ email: 'Alice@Example.com', email_verified: true, name: 'Alice Liddell' });

    const unverified = decodeJwt(await signer.assertionFor({ ...alice, email: 'alice@example.com', emailVerified: false }));
    expect(unverified).toMatchObject({ email: 'alice@example.com', email_verified: false });
    expect(unverified).not.toHaveProperty('name');

    const bare = decodeJwt(await signer.assertionFor(alice));
    for (const claim of ['email', 'email_verified', 'name']) expect(bare).not.toHaveProperty(claim);
  });

  it('keys reused assertions by the profile claims too: a changed e-mail or verification is signed at once', async () => {
    const signer = await IdentityAssertionSigner.create(config(), { now: testClock().now });
    const unverified = await signer.assertionFor({ ...alice, email: 'alice@example.com', emailVerified: false });
    const verified = await signer.assertionFor({ ...alice, email: 'alice@example.com', emailVerified: true });
    const renamed = await signer.assertionFor({ ...alice, email: 'alice@example.com', emailVerified: true, name: 'Al' });
    const moved = await signer.assertionFor({ ...alice, email: 'alice@example.org', emailVerified: true, name: 'Al' });
    expect(new Set([unverified, verified, renamed, moved]).size).toBe(4);
    expect(decodeJwt(verified).email_verified).toBe(true);
    expect(decodeJwt(moved).email).toBe('alice@example.org');
    expect(await signer.assertionFor({ ...alice, email: 'alice@example.com', emailVerified: true })).toBe(verified);
  });

  it('binds the assertion to one service: another audience does not verify', async () => {
    const signer = await IdentityAssertionSigner.create(config(), { now: testClock().now });
    const token = await signer.assertionFor(alice);
    await expect(verifyAsUpstream(signer, token, 'credentials')).rejects.toThrow(/aud/);
  });

  it('publishes only the public key, with its RFC 7638 thumbprint as kid', async () => {
    const signer = await IdentityAssertionSigner.create(config());
    const { keys } = signer.jwks();
    expect(keys).toHaveLength(1);
    const [jwk] = keys;
    expect(jwk).toMatchObject({ kty: 'OKP', crv: 'Ed25519', alg: 'EdDSA', use: 'sig', kid: signer.kid });
    expect(jwk).not.toHaveProperty('d');
    expect(await calculateJwkThumbprint(jwk!, 'sha256')).toBe(signer.kid);

    delete jwk!.kid;
    expect(signer.jwks().keys[0]!.kid).toBe(signer.kid);
  });

  it('uses a different ephemeral key in every process without a key file', async () => {
    const one = await IdentityAssertionSigner.create(config(), { now: testClock().now });
    const other = await IdentityAssertionSigner.create(config(), { now: testClock().now });
    expect(one.kid).not.toBe(other.kid);
    await expect(verifyAsUpstream(other, await one.assertionFor(alice), 'projects')).rejects.toThrow();
  });

  it('reuses an assertion until half its lifetime has passed, then signs a new one', async () => {
    const clock = testClock();
    const signer = await IdentityAssertionSigner.create(config({ ttl_s: 60 }), { now: clock.now });
    const first = await signer.assertionFor(alice);

    clock.advance(29_999);
    expect(await signer.assertionFor({ ...alice })).toBe(first);

    clock.advance(1);
    const second = await signer.assertionFor(alice);
    expect(second).not.toBe(first);
    expect(decodeJwt(second)).toMatchObject({ iat: T0 / 1000 + 30, exp: T0 / 1000 + 90 });
    await expect(verifyAsUpstream(signer, second, 'projects', clock.now())).resolves.toBeDefined();
  });

  it('keeps separate assertions per user, organization and service', async () => {
    const signer = await IdentityAssertionSigner.create(config(), { now: testClock().now });
    const tokens = await Promise.all([
      signer.assertionFor(alice),
      signer.assertionFor({ ...alice, org: 'globex' }),
      signer.assertionFor({ ...alice, service: 'credentials' }),
      signer.assertionFor({ ...alice, userId: 'b2c3d4e5-0000-4000-8000-000000000000', sub: 'idp|bob' }),
    ]);
    expect(new Set(tokens).size).toBe(4);
    expect(decodeJwt(tokens[1]).org).toBe('globex');
    expect(decodeJwt(tokens[2]).aud).toBe('portcullis:credentials');
  });

  it('shares one signature among concurrent requests of the same caller', async () => {
    // ES256 signatures are randomized, so equal strings can only come from the cache.
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const file = await keyFile('concurrent-p256.pem', privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
    const signer = await IdentityAssertionSigner.create(config({ signing_key_file: file }), { now: testClock().now });
    const tokens = await Promise.all(Array.from({ length: 10 }, () => signer.assertionFor(alice)));
    expect(new Set(tokens).size).toBe(1);
  });

  it.each([
    ['an Ed25519', 'ed25519', 'EdDSA', { kty: 'OKP', crv: 'Ed25519' }],
    ['a P-256', 'ec', 'ES256', { kty: 'EC', crv: 'P-256' }],
  ] as const)('signs with %s PKCS#8 key file, under a kid stable across processes', async (_name, type, alg, jwkShape) => {
    const { privateKey } = type === 'ec' ? generateKeyPairSync('ec', { namedCurve: 'prime256v1' }) : generateKeyPairSync('ed25519');
    const file = await keyFile(`${type}.pem`, privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());

    const signer = await IdentityAssertionSigner.create(config({ signing_key_file: file }), { now: testClock().now });
    const token = await signer.assertionFor(alice);
    expect(decodeProtectedHeader(token)).toMatchObject({ alg, kid: signer.kid });
    expect(signer.jwks().keys[0]).toMatchObject({ ...jwkShape, alg, use: 'sig' });
    expect(signer.jwks().keys[0]).not.toHaveProperty('d');
    await expect(verifyAsUpstream(signer, token, 'projects')).resolves.toBeDefined();

    const restarted = await IdentityAssertionSigner.create(config({ signing_key_file: file }));
    expect(restarted.kid).toBe(signer.kid);
  });

  it('refuses a key file that is not an Ed25519 or P-256 private key, naming the file', async () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const p384 = generateKeyPairSync('ec', { namedCurve: 'secp384r1' });
    const cases: Array<[string, string, RegExp]> = [
      ['rsa.pem', rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), /is a rsa key; use an Ed25519 or P-256/],
      ['p384.pem', p384.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), /is an EC secp384r1 key/],
      ['public.pem', rsa.publicKey.export({ type: 'spki', format: 'pem' }).toString(), /not a readable PEM private key/],
      ['garbage.pem', 'this is not a key', /not a readable PEM private key/],
    ];
    for (const [name, contents, message] of cases) {
      const file = await keyFile(name, contents);
      const failure = IdentityAssertionSigner.create(config({ signing_key_file: file }));
      await expect(failure).rejects.toThrow(`assertion.signing_key_file ${file}: `);
      await expect(failure).rejects.toThrow(message);
    }
    const missing = path.join(dir, 'missing.pem');
    await expect(IdentityAssertionSigner.create(config({ signing_key_file: missing }))).rejects.toThrow(
      `assertion.signing_key_file ${missing}: `,
    );
  });
});
