// Starts a complete Portcullis for a test file: its own cloned database, the shipped
// policies compiled once by the global setup, a token issuer and echo upstreams.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pino, { type Logger } from 'pino';
import { Portcullis } from '../../src/app';
import { parseConfig } from '../../src/config/load-config';
import { createTestDatabase, type TestDatabase } from './test-database';
import { startEchoUpstream, type EchoUpstream } from './echo-upstream';
import { AUDIENCE, createTokenIssuer, ISSUER, type TokenIssuer } from './token-issuer';

export const SERVICES = ['organizations', 'projects', 'credentials', 'users'] as const;
export type ServiceName = (typeof SERVICES)[number];

export interface Harness {
  gateway: Portcullis;
  database: TestDatabase;
  tokens: TokenIssuer;
  upstreams: Record<ServiceName, EchoUpstream>;
  /** The gateway's state folder. */
  stateDir: string;
  /** fetch against the gateway port. */
  request(pathAndQuery: string, init?: RequestInit & { token?: string }): Promise<Response>;
  close(): Promise<void>;
}

/**
 * `options.database`: run on that database (e.g. a second gateway beside another); its owner drops it.
 * `options.logger`: where the gateway logs (default: silent, or TEST_LOG_LEVEL).
 * `options.now`: the clock of the audit's per-minute limits (default: the real one).
 * `options.serviceUrls`: these services go to the given URLs instead of their echo upstream (the directory service).
 */
export async function startHarness(
  overrides: Record<string, unknown> = {},
  options: { database?: TestDatabase; logger?: Logger; now?: () => number; serviceUrls?: Partial<Record<ServiceName, string>> } = {},
): Promise<Harness> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'portcullis-harness-'));
  const database = options.database ?? (await createTestDatabase());
  const tokens = await createTokenIssuer(dir);
  const upstreams = Object.fromEntries(
    await Promise.all(SERVICES.map(async (name) => [name, await startEchoUpstream(name)] as const)),
  ) as Record<ServiceName, EchoUpstream>;
  const bundle = process.env.PORTCULLIS_TEST_BUNDLE;
  if (!bundle) throw new Error('PORTCULLIS_TEST_BUNDLE is not set: run tests through jest (global setup)');
  const config = parseConfig(
    {
      server: { host: '127.0.0.1', port: 0, upstream_timeout_ms: 2000 },
      admin: { host: '127.0.0.1', port: 0, token: 'test-admin-token-0123456789' },
      database: { url: database.url },
      auth: { issuer: ISSUER, audience: AUDIENCE, jwks_file: tokens.jwksFile, algorithms: ['ES256'], clock_tolerance_s: 5 },
      policy: { source: bundle },
      services: Object.fromEntries(SERVICES.map((name) => [name, { url: options.serviceUrls?.[name] ?? upstreams[name].url }])),
      ...overrides,
    },
    {},
    dir,
  );
  const stateDir = path.join(dir, '.portcullis');
  const gateway = await Portcullis.start(config, {
    logger: options.logger ?? pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }),
    stateDir,
    toolchain: { opaBin: process.env.PORTCULLIS_TEST_OPA },
    now: options.now,
  });
  return {
    gateway,
    database,
    tokens,
    upstreams,
    stateDir,
    request: (pathAndQuery, init = {}) => {
      const { token, ...rest } = init;
      const headers = new Headers(rest.headers);
      if (token) headers.set('authorization', `Bearer ${token}`);
      return fetch(`${gateway.gatewayUrl}${pathAndQuery}`, { ...rest, headers });
    },
    async close() {
      await gateway.close();
      await Promise.all(Object.values(upstreams).map((upstream) => upstream.close()));
      if (!options.database) await database.drop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
