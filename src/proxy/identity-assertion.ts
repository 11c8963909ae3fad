// The signed identity assertion sent upstream with every forwarded request (design §3.5):
// a short-lived JWT naming the user, organization and target service, which upstreams
// verify against the admin port's /.well-known/jwks.json. Signing costs as much as the rest
// of the pipeline, so one assertion is reused for the first half of its lifetime.
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { calculateJwkThumbprint, exportJWK, SignJWT, type JWK } from 'jose';
import { LRUCache } from 'lru-cache';
import type { PortcullisConfig } from '../config/config-schema';

type AssertionConfig = PortcullisConfig['assertion'];

export interface AssertionClaims {
  /** users.id; null when the caller has no user row yet (the assertion then carries no `sub`). */
  userId: string | null;
  /** The verified JWT `sub` of the caller. */
  sub: string;
  /** Organization slug when the request is org-scoped. */
  org: string | null;
  /** Target service name; the assertion's audience is `portcullis:<service>`. */
  service: string;
  /**
   * The verified token's OIDC profile claims, copied as they are (claims `email`,
   * `email_verified`, `name`): what an upstream such as the directory service registers a
   * user from. Absent ones are left out of the assertion.
   */
  email?: string | undefined;
  emailVerified?: boolean | undefined;
  name?: string | undefined;
}

export interface IdentityAssertionOptions {
  /** Clock in ms since the epoch (tests move it). */
  now?: () => number;
  /** Distinct (user, org, service, profile) assertions kept for reuse; default 10,000. */
  cacheMaxEntries?: number;
}

type SigningAlgorithm = 'EdDSA' | 'ES256';

interface CachedAssertion {
  token: Promise<string>;
  /** Reused until this time (ms): half the assertion's lifetime. */
  reuseUntil: number;
}

export class IdentityAssertionSigner {
  private readonly cache: LRUCache<string, CachedAssertion>;
  private readonly publicJwk: Readonly<JWK>;

  private constructor(
    private readonly config: AssertionConfig,
    private readonly privateKey: KeyObject,
    private readonly alg: SigningAlgorithm,
    publicJwk: JWK,
    readonly kid: string,
    private readonly now: () => number,
    cacheMaxEntries: number,
  ) {
    this.publicJwk = Object.freeze({ ...publicJwk, kid, alg, use: 'sig' });
    this.cache = new LRUCache({ max: cacheMaxEntries });
  }

  static async create(config: AssertionConfig, options: IdentityAssertionOptions = {}): Promise<IdentityAssertionSigner> {
    const { privateKey, alg } = config.signing_key_file ? await loadSigningKey(config.signing_key_file) : ephemeralKey();
    const publicJwk = await exportJWK(createPublicKey(privateKey));
    const kid = await calculateJwkThumbprint(publicJwk, 'sha256');
    return new IdentityAssertionSigner(config, privateKey, alg, publicJwk, kid, options.now ?? Date.now, options.cacheMaxEntries ?? 10_000);
  }

  /** A compact JWT for these claims, reused while less than half of its lifetime has passed. */
  assertionFor(claims: AssertionClaims): Promise<string> {
    // Every signed claim is in the key: a token with a new e-mail address gets a new assertion at once.
    const key = JSON.stringify([claims.userId, claims.sub, claims.org, claims.service, claims.email, claims.emailVerified, claims.name]);
    const now = this.now();
    const cached = this.cache.get(key);
    if (cached && now < cached.reuseUntil) return cached.token;

    const iat = Math.floor(now / 1000);
    // Cache the promise, so concurrent requests of one user share a single signature.
    const token = this.sign(claims, iat);
    this.cache.set(key, { token, reuseUntil: (iat + this.config.ttl_s / 2) * 1000 });
    token.catch(() => {
      if (this.cache.peek(key)?.token === token) this.cache.delete(key);
    });
    return token;
  }

  /** The public key set upstreams verify assertions with (served at /.well-known/jwks.json). */
  jwks(): { keys: JWK[] } {
    return { keys: [{ ...this.publicJwk }] };
  }

  private sign(claims: AssertionClaims, iat: number): Promise<string> {
    const payload: Record<string, unknown> = { portcullis_sub: claims.sub };
    if (claims.org !== null) payload.org = claims.org;
    if (claims.email !== undefined) payload.email = claims.email;
    if (claims.emailVerified !== undefined) payload.email_verified = claims.emailVerified;
    if (claims.name !== undefined) payload.name = claims.name;
    const jwt = new SignJWT(payload)
      .setProtectedHeader({ alg: this.alg, kid: this.kid, typ: 'JWT' })
      .setIssuer(this.config.issuer)
      .setAudience(`portcullis:${claims.service}`)
      .setIssuedAt(iat)
      .setExpirationTime(iat + this.config.ttl_s);
    if (claims.userId !== null) jwt.setSubject(claims.userId);
    return jwt.sign(this.privateKey);
  }
}

async function loadSigningKey(file: string): Promise<{ privateKey: KeyObject; alg: SigningAlgorithm }> {
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({ key: await readFile(file), format: 'pem' });
  } catch (error) {
    throw new Error(`assertion.signing_key_file ${file}: not a readable PEM private key (${(error as Error).message})`);
  }
  if (privateKey.asymmetricKeyType === 'ed25519') return { privateKey, alg: 'EdDSA' };
  if (privateKey.asymmetricKeyType === 'ec' && privateKey.asymmetricKeyDetails?.namedCurve === 'prime256v1')
    return { privateKey, alg: 'ES256' };
  const kind =
    privateKey.asymmetricKeyType === 'ec'
      ? `an EC ${privateKey.asymmetricKeyDetails?.namedCurve ?? 'unknown-curve'}`
      : `a ${privateKey.asymmetricKeyType ?? 'unknown'}`;
  throw new Error(`assertion.signing_key_file ${file}: is ${kind} key; use an Ed25519 or P-256 (prime256v1) key`);
}

function ephemeralKey(): { privateKey: KeyObject; alg: SigningAlgorithm } {
  return { privateKey: generateKeyPairSync('ed25519').privateKey, alg: 'EdDSA' };
}
