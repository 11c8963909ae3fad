// The authentication stage (R1): a bearer JWT verified against the identity provider's
// JWKS with pinned algorithms, issuer, audience, token types, lifetime and clock tolerance.
// Verified tokens are cached by the SHA-256 of their Authorization header (at most
// `auth.token_cache_ttl_s`, never past `exp`), because verification costs more than the rest
// of the pipeline together (performance budget). Every failure is a 401 AuthenticationError.
import { hash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  decodeProtectedHeader,
  errors,
  jwtVerify,
  type JSONWebKeySet,
  type JWTVerifyGetKey,
  type JWTVerifyResult,
} from 'jose';
import { LRUCache } from 'lru-cache';
import type { Logger } from 'pino';
import type { PortcullisConfig } from '../config/config-schema';
import { AuthenticationError } from '../base/errors';
import { profileClaims, type Authenticator, type Principal } from './authenticator';
import { discoverJwksUri } from './oidc-discovery';

export interface JwtAuthenticatorOptions {
  /** Upper bound on the whole JWKS fetch (connect, headers and body); default `auth.jwks_timeout_ms`. */
  fetchTimeoutMs?: number;
  /** Clock for claim checks and the token cache, in ms since the epoch (tests move it). */
  now?: () => number;
  /** Verified-token cache size; default 10,000. */
  cacheMaxEntries?: number;
  /** Longest time a verified token is served from the cache (never past its `exp`); default `auth.token_cache_ttl_s`. */
  cacheTtlMs?: number;
  /** Receives the issuer/audience mismatch warnings. */
  logger?: Pick<Logger, 'warn'>;
}

export interface TokenCacheStats {
  hits: number;
  misses: number;
  size: number;
}

type AuthConfig = PortcullisConfig['auth'];

/** Longer than any sane access token, well under Node's 16 KB header limit. */
const MAX_TOKEN_LENGTH = 8192;
/** RFC 6750 b64token after the scheme. */
const BEARER = /^Bearer +([A-Za-z0-9\-._~+/]+=*)$/i;
/** Compact JWS: three base64url segments; an empty signature is left for jose to refuse (`alg: none`). */
const COMPACT_JWS = /^[\w-]+\.[\w-]+\.[\w-]*$/;
/** A failed JWKS fetch is retried no sooner than this (or the cooldown, if shorter). */
const RETRY_AFTER_FAILED_FETCH_MS = 5_000;
/** While no key set was ever fetched, retries in the background back off from 1 s to 30 s. */
const BACKGROUND_RETRY_MS = { first: 1_000, max: 30_000 };
/** A mismatch warning repeats at most this often per distinct received value. */
const MISMATCH_WARNING_INTERVAL_MS = 60_000;

interface CachedPrincipal {
  principal: Principal;
  /** Not served at or after this time (ms): the token's `exp` or the cache TTL, whichever is first. */
  until: number;
}

export class JwtAuthenticator implements Authenticator {
  private readonly cache: LRUCache<string, CachedPrincipal>;
  /** Verifications under way, by token hash: concurrent presentations of one token share one (single flight). */
  private readonly verifying = new Map<string, Promise<Principal>>();
  private readonly stats = { hits: 0, misses: 0 };
  private readonly tokenTypes: ReadonlySet<string | null>;
  private readonly warnedAt = new LRUCache<string, number>({ max: 1000 });

  private constructor(
    private readonly auth: AuthConfig,
    private readonly keys: JWTVerifyGetKey,
    private readonly remote: RemoteKeySet | undefined,
    private readonly now: () => number,
    private readonly cacheTtlMs: number,
    cacheMaxEntries: number,
    private readonly logger: Pick<Logger, 'warn'> | undefined,
  ) {
    this.cache = new LRUCache({ max: cacheMaxEntries });
    this.tokenTypes = new Set(auth.token_types.map((typ) => (typ === null ? null : normalizeType(typ))));
  }

  /**
   * A remote key set (jwks_url, or discovery) is fetched here, once, within `auth.jwks_timeout_ms`;
   * if that fails the gateway still starts (tokens are refused meanwhile, `keySetStatus()` says
   * why) and the fetch is retried in the background until it succeeds.
   */
  static async create(auth: AuthConfig, options: JwtAuthenticatorOptions = {}): Promise<JwtAuthenticator> {
    const now = options.now ?? Date.now;
    let keys: JWTVerifyGetKey;
    let remote: RemoteKeySet | undefined;
    if (auth.jwks_file) {
      keys = await loadKeyFile(auth.jwks_file);
    } else if (auth.jwks_url || auth.discovery) {
      const cooldownMs = auth.jwks_cooldown_s * 1000;
      const deadlineMs = options.fetchTimeoutMs ?? auth.jwks_timeout_ms;
      const jwksUrl = auth.jwks_url;
      remote = new RemoteKeySet(jwksUrl ? () => Promise.resolve(new URL(jwksUrl)) : () => discoverJwksUri(auth.issuer, deadlineMs), {
        cooldownMs,
        cacheMaxAgeMs: auth.jwks_cache_max_age_s * 1000,
        socketTimeoutMs: auth.jwks_timeout_ms,
        deadlineMs,
        retryAfterFailureMs: Math.min(cooldownMs, RETRY_AFTER_FAILED_FETCH_MS),
      });
      await remote.start();
      keys = remote.getKey;
    } else {
      throw new Error('auth: exactly one of jwks_url, jwks_file and discovery: true is required');
    }
    const cacheTtlMs = options.cacheTtlMs ?? auth.token_cache_ttl_s * 1000;
    return new JwtAuthenticator(auth, keys, remote, now, cacheTtlMs, options.cacheMaxEntries ?? 10_000, options.logger);
  }

  /** `ok` once signing keys are at hand; otherwise why not (for `/readyz`). */
  keySetStatus(): string {
    return this.remote?.unavailableReason ?? 'ok';
  }

  /** Stops retrying a key set fetch in the background. */
  close(): void {
    this.remote?.close();
  }

  async authenticate(authorization: string | undefined): Promise<Principal> {
    // Keyed by the digest of the whole header, so the cache holds no bearer credential, and a
    // header seen before needs no parsing again (what bearerToken decides depends on it alone).
    // One-shot: a Hash object per request was ~17 µs of a cached request's main thread.
    // A missing header hashes as an empty one, which bearerToken refuses before anything is cached.
    const key = hash('sha256', authorization ?? '', 'base64url');
    const cached = this.cache.get(key);
    if (cached && this.now() < cached.until) {
      this.stats.hits += 1;
      return cached.principal;
    }
    const token = bearerToken(authorization);
    this.stats.misses += 1;
    if (cached) this.cache.delete(key);
    // Disabled caches (a TTL of 0): every presentation is verified on its own.
    if (this.cacheTtlMs === 0) return this.verify(token);

    let verification = this.verifying.get(key);
    if (!verification) {
      verification = this.verify(token)
        .then((principal) => {
          const until = Math.min(this.now() + this.cacheTtlMs, principal.expiresAt * 1000);
          if (until > this.now()) this.cache.set(key, { principal, until });
          return principal;
        })
        .finally(() => this.verifying.delete(key));
      this.verifying.set(key, verification);
    }
    return verification;
  }

  cacheStats(): TokenCacheStats {
    return { ...this.stats, size: this.cache.size };
  }

  private async verify(token: string): Promise<Principal> {
    let verified: JWTVerifyResult;
    try {
      verified = await jwtVerify(token, this.keys, {
        issuer: this.auth.issuer,
        audience: this.auth.audience,
        algorithms: this.auth.algorithms,
        clockTolerance: this.auth.clock_tolerance_s,
        currentDate: new Date(this.now()),
        requiredClaims: ['sub', 'exp'],
      });
    } catch (error) {
      if (error instanceof errors.JWTClaimValidationFailed && error.reason === 'check_failed') this.warnMismatch(error);
      throw authenticationFailure(error, token);
    }
    const { payload, protectedHeader } = verified;
    const { typ } = protectedHeader as { typ?: unknown };
    const type = typeof typ === 'string' ? normalizeType(typ) : typ === undefined ? null : undefined;
    if (type === undefined || !this.tokenTypes.has(type)) throw new AuthenticationError(typeRefusal(typ));
    // exp is required above. A future iat cannot shorten the lifetime: count from now then.
    const nowS = this.now() / 1000;
    const exp = payload.exp!;
    if (exp - Math.min(payload.iat ?? nowS, nowS) > this.auth.max_token_lifetime_s) {
      throw new AuthenticationError(`token lifetime exceeds auth.max_token_lifetime_s (${this.auth.max_token_lifetime_s} s)`);
    }
    if (typeof payload.sub !== 'string' || payload.sub.length === 0) {
      throw new AuthenticationError('token subject must be a non-empty string');
    }
    return Object.freeze({ sub: payload.sub, expiresAt: exp, claims: Object.freeze({ ...payload }), ...profileClaims(payload) });
  }

  /**
   * An issuer or audience mismatch is usually configuration (a trailing slash, a client id
   * for an API id): say what was expected and what came, once a minute per distinct value.
   * The payload's signature has already verified, so only the provider's own tokens get here.
   */
  private warnMismatch(error: errors.JWTClaimValidationFailed): void {
    if (!this.logger || (error.claim !== 'iss' && error.claim !== 'aud')) return;
    const received = boundedClaim(error.payload[error.claim]);
    const key = `${error.claim} ${JSON.stringify(received)}`;
    const last = this.warnedAt.get(key);
    if (last !== undefined && this.now() - last < MISMATCH_WARNING_INTERVAL_MS) return;
    this.warnedAt.set(key, this.now());
    const expected = error.claim === 'iss' ? this.auth.issuer : this.auth.audience;
    const setting = error.claim === 'iss' ? 'auth.issuer' : 'auth.audience';
    this.logger.warn({ claim: error.claim, expected, received }, `token ${error.claim} does not match ${setting}: 401`);
  }
}

/** RFC 8725 §3.11, RFC 7515 §4.1.9: `typ` compares case-insensitively, `application/` optional. */
function normalizeType(typ: string): string {
  return typ.toLowerCase().replace(/^application\//, '');
}

function typeRefusal(typ: unknown): string {
  if (typ === undefined) return 'a token without a "typ" header is not accepted';
  return typeof typ === 'string' && /^[\w.+/-]{1,40}$/.test(typ) ? `token type "${typ}" is not accepted` : 'token type is not accepted';
}

/** A claim value fit for a log line: strings cut at 200 characters, lists at 10 entries. */
function boundedClaim(value: unknown): unknown {
  const cut = (item: unknown) => (typeof item === 'string' && item.length > 200 ? `${item.slice(0, 200)}…` : item);
  return Array.isArray(value) ? value.slice(0, 10).map(cut) : cut(value);
}

function bearerToken(authorization: string | undefined): string {
  if (authorization === undefined || authorization.trim() === '') {
    // RFC 6750 §3.1: a request with no credentials gets a challenge without an error code.
    throw new AuthenticationError('missing bearer token', null);
  }
  if (authorization.length > MAX_TOKEN_LENGTH + 'Bearer '.length) {
    throw new AuthenticationError('bearer token is too long', 'invalid_request');
  }
  const token = BEARER.exec(authorization)?.[1];
  if (token === undefined) {
    const message = /^Bearer(\s|$)/i.test(authorization)
      ? 'malformed bearer token: expected "Bearer" and exactly one token'
      : 'the Authorization header must use the Bearer scheme';
    throw new AuthenticationError(message, 'invalid_request');
  }
  if (!COMPACT_JWS.test(token)) throw new AuthenticationError('bearer token is not a JWT');
  return token;
}

/** A short, human message for each way verification fails; never the token itself. */
function authenticationFailure(error: unknown, token: string): AuthenticationError {
  if (error instanceof KeySetUnavailable) {
    // Not invalid_token: the token may be fine, so clients should retry rather than re-authenticate.
    return new AuthenticationError('the signing keys of the identity provider are unavailable; try again shortly', null, { cause: error });
  }
  if (error instanceof errors.JWTExpired) return new AuthenticationError('token expired');
  if (error instanceof errors.JWTClaimValidationFailed) return new AuthenticationError(claimFailure(error));
  if (error instanceof errors.JWSSignatureVerificationFailed) return new AuthenticationError('token signature does not verify');
  if (error instanceof errors.JOSEAlgNotAllowed) {
    const alg = headerParameter(token, 'alg');
    return new AuthenticationError(alg ? `algorithm ${alg} is not allowed` : 'token algorithm is not allowed');
  }
  if (error instanceof errors.JWKSNoMatchingKey) {
    return new AuthenticationError(
      headerParameter(token, 'kid') !== undefined ? "no key matches the token's kid" : 'no key matches the token',
    );
  }
  if (error instanceof errors.JWKSMultipleMatchingKeys) return new AuthenticationError('token has no kid and several keys could match');
  if (error instanceof errors.JOSENotSupported) {
    return new AuthenticationError(
      error.message.startsWith('Extension Header Parameter')
        ? 'token has an unsupported critical header parameter'
        : 'token algorithm or key type is not supported',
    );
  }
  if (error instanceof errors.JWTInvalid) {
    return new AuthenticationError(
      error.message.includes('top-level JSON object') ? 'token payload is not a JSON object' : 'token is malformed',
    );
  }
  if (error instanceof errors.JWSInvalid) return new AuthenticationError('token is malformed');
  return new AuthenticationError('token could not be verified', 'invalid_token', { cause: error });
}

function claimFailure(error: errors.JWTClaimValidationFailed): string {
  if (error.reason === 'missing') return `token has no "${error.claim}" claim`;
  if (error.reason === 'invalid') return `token "${error.claim}" claim is not a number`;
  switch (error.claim) {
    case 'nbf':
      return 'token is not valid yet';
    case 'iss':
      return 'token issuer is not trusted';
    case 'aud':
      return 'token audience is not accepted';
    default:
      return `token "${error.claim}" claim is invalid`;
  }
}

/** A header value safe to echo (short, plain characters), or undefined. */
function headerParameter(token: string, name: 'alg' | 'kid'): string | undefined {
  try {
    const value = decodeProtectedHeader(token)[name];
    return typeof value === 'string' && /^[\w.+-]{1,40}$/.test(value) ? value : value === undefined ? undefined : '';
  } catch {
    return undefined;
  }
}

async function loadKeyFile(file: string): Promise<JWTVerifyGetKey> {
  let jwks: unknown;
  try {
    jwks = JSON.parse(await readFile(file, 'utf8'));
  } catch (error) {
    throw new Error(`auth.jwks_file ${file}: cannot be read as JSON (${(error as Error).message})`);
  }
  const keys = (jwks as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys) || keys.length === 0 || !keys.every((key) => typeof key === 'object' && key !== null)) {
    throw new Error(`auth.jwks_file ${file}: not a JSON Web Key Set (expected {"keys": [...]} with at least one key)`);
  }
  if (keys.some((key: Record<string, unknown>) => 'd' in key || key.kty === 'oct')) {
    throw new Error(`auth.jwks_file ${file}: contains a private or symmetric key; publish public keys only`);
  }
  return createLocalJWKSet(jwks as JSONWebKeySet);
}

/** No key set could be fetched and none was fetched before: the token cannot be checked. */
class KeySetUnavailable extends Error {
  constructor(reason: string, cause: unknown) {
    super(reason, { cause });
    this.name = 'KeySetUnavailable';
  }
}

interface RemoteKeySetOptions {
  cooldownMs: number;
  cacheMaxAgeMs: number;
  /** jose's socket idle timeout. */
  socketTimeoutMs: number;
  /** Bound on a whole key set fetch (and on discovery); jose's timeout only covers waiting for the response headers. */
  deadlineMs: number;
  retryAfterFailureMs: number;
}

/**
 * jose's remote key set does the fetching, the cache max age and the cooldown. Around it,
 * what a gateway needs during an identity-provider outage: a deadline on each fetch, no
 * refetch per request after a failure, and the last good keys kept in use meanwhile
 * (tokens are still checked for signature and expiry). With no good keys yet, every token
 * fails with KeySetUnavailable (a 401, after at most one bounded wait), `unavailableReason`
 * says why, and the fetch is retried in the background with bounded backoff.
 */
class RemoteKeySet {
  /** Undefined until `locate` has named the key set URL, and after a failed fetch (start afresh). */
  private remote: ReturnType<typeof createRemoteJWKSet> | undefined;
  private url: URL | undefined;
  private keys: JWTVerifyGetKey | undefined;
  private lastError: unknown;
  private problem = 'the signing keys have not been fetched yet';
  private failedAt = -Infinity;
  private refreshing: Promise<void> | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private closed = false;

  /** `locate`: the key set URL, configured or discovered; throws a message fit for `/readyz`. */
  constructor(
    private readonly locate: () => Promise<URL>,
    private readonly options: RemoteKeySetOptions,
  ) {}

  /** The first fetch; until one succeeds, retries in the background (1 s, doubling to 30 s). */
  async start(delayMs = BACKGROUND_RETRY_MS.first): Promise<void> {
    await this.fetchOnce();
    if (this.keys || this.closed) return;
    this.retryTimer = setTimeout(() => void this.start(Math.min(delayMs * 2, BACKGROUND_RETRY_MS.max)), delayMs).unref();
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.retryTimer);
  }

  /** Undefined while keys are at hand (even stale ones); else why none are. */
  get unavailableReason(): string | undefined {
    return this.keys ? undefined : this.problem;
  }

  readonly getKey: JWTVerifyGetKey = async (header, token) => {
    if (!this.remote?.fresh) await this.refresh();
    const keys = this.keys;
    if (!keys) throw new KeySetUnavailable(this.problem, this.lastError);
    try {
      return await keys(header, token);
    } catch (error) {
      // An unknown kid may mean the provider rotated keys; refetch, at most once per cooldown.
      if (!(error instanceof errors.JWKSNoMatchingKey) || this.remote?.coolingDown) throw error;
      await this.refresh();
      if (this.keys === keys) throw error;
      return this.keys!(header, token);
    }
  };

  private refresh(): Promise<void> {
    if (Date.now() - this.failedAt < this.options.retryAfterFailureMs) return Promise.resolve();
    return this.fetchOnce();
  }

  private fetchOnce(): Promise<void> {
    this.refreshing ??= this.fetch().finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  private async fetch(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    try {
      // Discovery bounds its own request; a configured URL is at hand.
      this.url ??= await this.locate();
      this.remote ??= this.createRemote(this.url);
      const deadline = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new errors.JWKSTimeout(`no answer within ${this.options.deadlineMs} ms`)), this.options.deadlineMs);
      });
      await Promise.race([this.remote.reload(), deadline]);
      const jwks = this.remote.jwks();
      if (jwks) this.keys = createLocalJWKSet(jwks);
    } catch (error) {
      this.lastError = error;
      this.failedAt = Date.now();
      // Duck-typed: errors from Node's own modules may come from another realm (jest, vm).
      const message = typeof (error as Error | undefined)?.message === 'string' ? (error as Error).message : String(error);
      this.problem = this.url ? `the signing keys could not be fetched from ${this.url.href}: ${message}` : message;
      // A fetch whose body never ends would stay jose's pending fetch forever: start afresh.
      this.remote = undefined;
    } finally {
      clearTimeout(timer);
    }
  }

  private createRemote(url: URL): ReturnType<typeof createRemoteJWKSet> {
    return createRemoteJWKSet(url, {
      cooldownDuration: this.options.cooldownMs,
      cacheMaxAge: this.options.cacheMaxAgeMs,
      timeoutDuration: this.options.socketTimeoutMs,
    });
  }
}
