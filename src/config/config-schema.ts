// The one schema of portcullis.yaml (design §3.2). Every key is strict: unknown keys and
// bad values are start-up errors naming the key path.
import { z } from 'zod';
import { auditConfigSchema } from '../audit/audit-config';
import { MAX_DECODED_BYTES } from '../http/form-method-override';
import { parseAddressRange } from '../proxy/forwarded-headers';

const hostPort = (defaultPort: number) =>
  z.strictObject({
    host: z.string().min(1).default('127.0.0.1'),
    port: z.number().int().min(0).max(65535).default(defaultPort),
  });

const ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const;

const httpUrl = z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' });

const routeSchema = z.strictObject({
  method: z.union([z.string(), z.array(z.string()).min(1)]),
  path: z.string().regex(/^\/[^?#]*$/, 'must be a path starting with /'),
  action: z.string().regex(/^[a-z][a-z0-9_-]*:[a-z*][a-z0-9_-]*$/, 'must look like resource:verb'),
  service: z.string().min(1),
  resource: z.string().min(1).optional(),
  /** Parameters forwarded unchecked, `{ <param>: upstream }`: the upstream checks them (README "Routes"). */
  checked_by: z.record(z.string(), z.literal('upstream', { error: 'the only checker is "upstream"' })).optional(),
});

export const configSchema = z
  .strictObject({
    server: hostPort(8080)
      .extend({
        /** Upper bound for request bodies forwarded upstream, in bytes. */
        body_limit_bytes: z
          .number()
          .int()
          .positive()
          .default(10 * 1024 * 1024),
        /** What a compressed form or JSON body may decode to while it is checked for `_method` (413 beyond). */
        decoded_body_limit_bytes: z.number().int().positive().default(MAX_DECODED_BYTES),
        /** How long the upstream may take to answer before the client gets 504. */
        upstream_timeout_ms: z.number().int().positive().default(30_000),
        /** Slow clients: the whole header block, and the whole request, must arrive within these. */
        headers_timeout_ms: z.number().int().positive().default(10_000),
        request_timeout_ms: z.number().int().positive().default(60_000),
        /** Larger header blocks are answered 431. */
        max_header_bytes: z
          .number()
          .int()
          .min(1024)
          .max(1024 * 1024)
          .default(16 * 1024),
        /** SIGTERM/SIGINT: the whole shutdown (drain, cut, flush or spool records, close) ends within this. */
        shutdown_grace_ms: z.number().int().min(100).max(600_000).default(8_000),
        /** Peers whose X-Forwarded-For / Forwarded chain is kept (a load balancer in front of the gateway). */
        trusted_proxies: z
          .array(
            z.string().refine((entry) => parseAddressRange(entry) !== undefined, 'must be an IP address or a CIDR range like 10.0.0.0/8'),
          )
          .default([]),
      })
      .prefault({}),
    admin: hostPort(9090)
      .extend({
        token: z.string().min(16, 'must be at least 16 characters').optional(),
        /** The operator console under /console/ (README "The operator console"). */
        console: z
          .strictObject({
            /** HMAC key of session cookies; instances behind one address share it. Absent: a random key per process. */
            session_secret: z.string().min(32, 'must be at least 32 characters').optional(),
            session_ttl_s: z
              .number()
              .int()
              .min(60)
              .max(7 * 86_400)
              .default(8 * 3600),
            /** Mark the cookie Secure even over plain HTTP (TLS terminated in front of the admin port). */
            secure_cookie: z.boolean().default(false),
          })
          .prefault({}),
      })
      .prefault({}),
    database: z
      .strictObject({
        url: z.string().min(1).optional(),
        /** A request needing the database fails closed (503) after waiting this long for it. */
        timeout_ms: z.number().int().positive().default(800),
      })
      .prefault({}),
    auth: z.strictObject({
      issuer: z.string().min(1),
      audience: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]),
      /** OpenID Connect Discovery: the key set URL comes from `<issuer>/.well-known/openid-configuration`. */
      discovery: z.boolean().default(false),
      jwks_url: httpUrl.optional(),
      jwks_file: z.string().min(1).optional(),
      algorithms: z.array(z.enum(ALGORITHMS)).min(1).default(['RS256', 'ES256', 'EdDSA']),
      clock_tolerance_s: z.number().int().min(0).max(300).default(30),
      /** Longest accepted token lifetime: `exp - iat` (or `exp - now` without `iat`). */
      max_token_lifetime_s: z.number().int().positive().default(86_400),
      /** Accepted `typ` headers (null: no `typ`); ID tokens and logout tokens are not access tokens. */
      token_types: z.array(z.string().min(1).nullable()).min(1).default([null, 'JWT', 'at+jwt']),
      /** Remote JWKS: how long a fetched key set is trusted, and the minimum gap between refetches. */
      jwks_cache_max_age_s: z.number().int().positive().default(600),
      jwks_cooldown_s: z.number().int().positive().default(5),
      jwks_timeout_ms: z.number().int().positive().default(2000),
      /** How long a verified token is served from the cache (never past its `exp`). */
      token_cache_ttl_s: z.number().int().min(0).max(3600).default(300),
    }),
    policy: z
      .strictObject({
        source: z.string().min(1).default('policies'),
        entrypoint: z
          .string()
          .regex(/^[A-Za-z_][\w]*(\/[A-Za-z_][\w]*)*$/, 'must be a path like portcullis/decision')
          .default('portcullis/decision'),
        /** How often an http(s) bundle source is polled (with If-None-Match). */
        poll_interval_s: z.number().int().min(1).max(86_400).default(30),
        /** Bundles must carry an OPA signature (.signatures.json) made with this key's private half. */
        verification: z
          .strictObject({
            public_key_file: z.string().min(1),
            algorithm: z.enum(['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512']).optional(),
          })
          .optional(),
        /** A candidate policy evaluated beside the active one on every request, never enforced. */
        shadow: z.strictObject({ source: z.string().min(1) }).optional(),
        /**
         * thread: requests (and dry runs) are judged in a worker thread beside the event loop;
         * inline: on it; auto: inline while requests come one at a time, in the thread once they
         * overlap (src/authz/evaluation-placement.ts).
         */
        evaluation: z.enum(['auto', 'inline', 'thread']).default('auto'),
      })
      .prefault({}),
    /** Caches of the hot path (issue 6): verified tokens, subjects and resource facts. */
    cache: z
      .strictObject({
        /** false: every request verifies its token and reads PostgreSQL (for comparison and debugging). */
        enabled: z.boolean().default(true),
        /** Safety net only: change notifications evict entries within a second of a commit. */
        ttl_s: z.number().int().min(1).max(3600).default(60),
        /** Entries per cache. */
        max_entries: z.number().int().min(1).max(10_000_000).default(10_000),
      })
      .prefault({}),
    /** The signed identity assertion sent upstream (design §3.5). */
    assertion: z
      .strictObject({
        /** A PKCS#8 PEM private key (Ed25519 or P-256); absent: an ephemeral Ed25519 key per process. */
        signing_key_file: z.string().min(1).optional(),
        issuer: z.string().min(1).default('portcullis'),
        ttl_s: z.number().int().min(5).max(3600).default(60),
      })
      .prefault({}),
    services: z.record(
      z.string().regex(/^[a-z][a-z0-9_-]*$/, 'service names are lower-case words'),
      z.strictObject({
        url: httpUrl,
        /** The client's Authorization reaches this upstream only when set (it gets the assertion regardless). */
        forward_authorization: z.boolean().default(false),
        /** The gateway never authenticates with cookies, so they pass unless the service opts out. */
        forward_cookies: z.boolean().default(true),
      }),
    ),
    routes: z.array(routeSchema).default([]),
    /** The directory service (`portcullis directory serve`), an upstream of the gateway over the same database. */
    directory: hostPort(7010)
      .extend({
        /** The gateway's /.well-known/jwks.json; absent: the public half of assertion.signing_key_file. */
        gateway_jwks_url: httpUrl.optional(),
        /** POST {sub, email} here on `POST /users/me/password-reset`; absent: that operation answers 501. */
        password_reset_webhook: httpUrl.optional(),
        /** JSON Pointers into the before/after representations of directory_events, erased before storing (like audit.mask). */
        event_mask: z.array(z.string().regex(/^\/./, 'must be a JSON pointer to a field, like /email')).default([]),
      })
      .prefault({}),
    /** The decision log: recording mode, spool, retention, masking, export. */
    audit: auditConfigSchema,
  })
  .superRefine((config, ctx) => {
    const { jwks_url, jwks_file, discovery, issuer } = config.auth;
    if ([jwks_url !== undefined, jwks_file !== undefined, discovery].filter(Boolean).length !== 1) {
      ctx.addIssue({ code: 'custom', path: ['auth'], message: 'exactly one of jwks_url, jwks_file and discovery: true is required' });
    }
    // Keys and policies decide who gets in: never fetched where the network can alter them.
    const remote = (source: string | undefined) => (source !== undefined && /^https?:\/\//i.test(source) ? source : undefined);
    const fetched: Array<[string | undefined, string[]]> = [
      [jwks_url, ['auth', 'jwks_url']],
      [discovery ? issuer : undefined, ['auth', 'issuer']],
      [remote(config.policy.source), ['policy', 'source']],
      [remote(config.policy.shadow?.source), ['policy', 'shadow', 'source']],
      [config.directory.gateway_jwks_url, ['directory', 'gateway_jwks_url']],
    ];
    for (const [url, path] of fetched) {
      if (url !== undefined && !isSecureFetchUrl(url)) {
        ctx.addIssue({ code: 'custom', path, message: `must be an https URL (http only on loopback): ${url}` });
      }
    }
    config.routes.forEach((route, index) => {
      if (!(route.service in config.services)) {
        ctx.addIssue({ code: 'custom', path: ['routes', index, 'service'], message: `names no service in services: "${route.service}"` });
      }
    });
  });

/** An https URL, or an http URL on loopback (127.0.0.0/8, ::1, localhost): safe to fetch keys or policies from. */
export function isSecureFetchUrl(value: string): boolean {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return false;
  }
  return url.protocol === 'https:' || (url.protocol === 'http:' && isLoopbackHost(url.hostname));
}

export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  return host === 'localhost' || host === '::1' || /^127(\.\d{1,3}){3}$/.test(host);
}

export type PortcullisConfig = z.infer<typeof configSchema>;
export type RouteConfig = z.infer<typeof routeSchema>;
