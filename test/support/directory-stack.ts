// The gateway and the directory service together, as in production: the gateway (with an
// Ed25519 assertion key on disk) sends organizations, users and projects to a directory
// service started in-process on the same test database; credentials still go to an echo
// upstream. Tests call the gateway with real tokens through `as(name)`.
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { JWTPayload } from 'jose';
import pino, { type Logger } from 'pino';
import { parseConfig } from '../../src/config/load-config';
import { DirectoryService } from '../../src/directory-service/directory-service';
import { seedDirectory, type Directory } from './directory-fixtures';
import { startHarness, type Harness } from './gateway-harness';
import { createTestDatabase, type TestDatabase } from './test-database';

export interface DirectoryStackOptions {
  /** Configuration overrides of the gateway (top-level sections). */
  gateway?: Record<string, unknown>;
  /** The `directory` section of the directory service (host and port are loopback and 0). */
  directory?: Record<string, unknown>;
  /** Seed test/support/directory-fixtures.ts (default true). */
  seed?: boolean;
  logger?: Logger;
}

export interface RequestInitWithJson extends RequestInit {
  /** Sent as the JSON body (with Content-Type: application/json). */
  json?: unknown;
}

/**
 * A fetch Response whose JSON body is what the test expects the endpoint to answer:
 * `request<Organization>('/orgs/acme')`, `request<Problem>(…)` for an error (unknown by default).
 */
export type JsonResponse<T = unknown> = Omit<Response, 'json'> & { json(): Promise<T> };

/** The body of an error answer: problem details (RFC 9457), as src/http/problem.ts writes them. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  request_id?: string;
  decision_id?: string;
}

export interface Caller {
  token: string;
  /** fetch against the gateway port, as this caller. */
  request<T = unknown>(pathAndQuery: string, init?: RequestInitWithJson): Promise<JsonResponse<T>>;
}

export interface DirectoryStack {
  harness: Harness;
  service: DirectoryService;
  database: TestDatabase;
  /** The seeded directory (undefined with `seed: false`). */
  directory: Directory | undefined;
  /** The assertion's private key file: a test may sign its own (forged, expired) assertions. */
  signingKeyFile: string;
  /**
   * A caller with a real token: subject `<name>|sub` (the fixtures' convention) and the claims
   * `email: <name>@example.com`, `email_verified: true`, `name: <name>`, overridden by `claims`.
   */
  as(name: string, claims?: JWTPayload): Promise<Caller>;
  /** fetch against the gateway port, without a token. */
  request<T = unknown>(pathAndQuery: string, init?: RequestInitWithJson): Promise<JsonResponse<T>>;
  close(): Promise<void>;
}

export async function startDirectoryStack(options: DirectoryStackOptions = {}): Promise<DirectoryStack> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'portcullis-directory-'));
  const signingKeyFile = path.join(dir, 'assertion-key.pem');
  await writeFile(signingKeyFile, generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }));
  const database = await createTestDatabase();
  const logger = options.logger ?? pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
  let service: DirectoryService | undefined;
  let harness: Harness | undefined;
  try {
    const directory = options.seed === false ? undefined : await seedDirectory(database.db);
    const serviceConfig = parseConfig(
      {
        auth: { issuer: 'https://id.test.portcullis', audience: 'portcullis', jwks_file: 'unused.json' },
        services: {},
        database: { url: database.url },
        assertion: { signing_key_file: signingKeyFile },
        directory: { host: '127.0.0.1', port: 0, ...options.directory },
      },
      {},
      dir,
    );
    service = await DirectoryService.start(serviceConfig, { logger });
    const serviceUrl = service.url;
    const gatewayOverrides = options.gateway ?? {};
    harness = await startHarness(
      { ...gatewayOverrides, assertion: { ...(gatewayOverrides.assertion as object | undefined), signing_key_file: signingKeyFile } },
      { database, logger, serviceUrls: { organizations: serviceUrl, users: serviceUrl, projects: serviceUrl } },
    );
    const gateway = harness;
    // The test says what body it expects (JsonResponse<T>); the gateway's Response is what arrives.
    const send = <T>(token: string | undefined, pathAndQuery: string, init: RequestInitWithJson = {}) => {
      const { json, ...rest } = init;
      const withToken = token ? { token } : {};
      if (json === undefined) return gateway.request(pathAndQuery, { ...rest, ...withToken }) as Promise<JsonResponse<T>>;
      const headers = new Headers(rest.headers);
      headers.set('content-type', 'application/json');
      return gateway.request(pathAndQuery, { ...rest, headers, body: JSON.stringify(json), ...withToken }) as Promise<JsonResponse<T>>;
    };
    const running = service;
    return {
      harness: gateway,
      service: running,
      database,
      directory,
      signingKeyFile,
      async as(name, claims = {}) {
        const token = await gateway.tokens.sign(`${name}|sub`, { email: `${name}@example.com`, email_verified: true, name, ...claims });
        return { token, request: <T>(pathAndQuery: string, init?: RequestInitWithJson) => send<T>(token, pathAndQuery, init) };
      },
      request: <T>(pathAndQuery: string, init?: RequestInitWithJson) => send<T>(undefined, pathAndQuery, init),
      async close() {
        await gateway.close();
        await running.close();
        await database.drop();
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    await harness?.close();
    await service?.close();
    await database.drop();
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}
