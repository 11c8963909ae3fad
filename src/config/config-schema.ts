// The one schema of portcullis.yaml (design §3.2). Every key is strict: unknown keys and
// bad values are start-up errors naming the key path.
import { z } from 'zod';
import { auditConfigSchema } from '../audit/audit-config';

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
});

export const configSchema = z
  .strictObject({
    server: hostPort(8080)
      .extend({
        /** Upper bound for request bodies forwarded upstream, in bytes. */
        body_limit_bytes: z.number().int().positive().default(10 * 1024 * 1024),
        /** How long the upstream may take to answer before the client gets 504. */
        upstream_timeout_ms: z.number().int().positive().default(30_000),
        /** Slow clients: the whole header block, and the whole request, must arrive within these. */
        headers_timeout_ms: z.number().int().positive().default(10_000),
        request_timeout_ms: z.number().int().positive().default(60_000),
        /** Larger header blocks are answered 431. */
        max_header_bytes: z.number().int().min(1024).max(1024 * 1024).default(16 * 1024),
      })
      .prefault({}),
    admin: hostPort(9090)
      .extend({ token: z.string().min(16, 'must be at least 16 characters').optional() })
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
      jwks_url: httpUrl.optional(),
      jwks_file: z.string().min(1).optional(),
      algorithms: z.array(z.enum(ALGORITHMS)).min(1).default(['RS256', 'ES256', 'EdDSA']),
      clock_tolerance_s: z.number().int().min(0).max(300).default(30),
      /** Remote JWKS: how long a fetched key set is trusted, and the minimum gap between refetches. */
      jwks_cache_max_age_s: z.number().int().positive().default(600),
      jwks_cooldown_s: z.number().int().positive().default(30),
      jwks_timeout_ms: z.number().int().positive().default(2000),
    }),
    policy: z
      .strictObject({
        source: z.string().min(1).default('policies'),
        entrypoint: z.string().regex(/^[A-Za-z_][\w]*(\/[A-Za-z_][\w]*)*$/, 'must be a path like portcullis/decision').default('portcullis/decision'),
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
    services: z.record(z.string().regex(/^[a-z][a-z0-9_-]*$/, 'service names are lower-case words'), z.strictObject({ url: httpUrl })),
    routes: z.array(routeSchema).default([]),
    /** The decision log: recording mode, spool, retention, masking, export. */
    audit: auditConfigSchema,
  })
  .superRefine((config, ctx) => {
    const { jwks_url, jwks_file } = config.auth;
    if (!jwks_url === !jwks_file) {
      ctx.addIssue({ code: 'custom', path: ['auth'], message: 'exactly one of jwks_url and jwks_file is required' });
    }
    config.routes.forEach((route, index) => {
      if (!(route.service in config.services)) {
        ctx.addIssue({ code: 'custom', path: ['routes', index, 'service'], message: `names no service in services: "${route.service}"` });
      }
    });
  });

export type PortcullisConfig = z.infer<typeof configSchema>;
export type RouteConfig = z.infer<typeof routeSchema>;
