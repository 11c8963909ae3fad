// The directory service as an upstream: it believes only the gateway's assertion (a request
// around the gateway gets 401), documents itself with OpenAPI 3.1 generated from its
// validators, replays POSTs carrying an Idempotency-Key, and pages lists with stable cursors.
import { createPrivateKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from '@jest/globals';
import { SignJWT } from 'jose';
import pino from 'pino';
import { parseConfig } from '../src/config/load-config';
import { directoryOperations } from '../src/directory-service/directory-app';
import { DirectoryEvents } from '../src/directory-service/directory-events';
import type { Page } from '../src/directory-service/http-semantics';
import type { User } from '../src/directory-service/users-operations';
import { defaultRoutes } from '../src/routes/default-routes';
import { requireBuild, spawnCli } from './support/cli-process';
import { startDirectoryStack, type DirectoryStack, type JsonResponse, type Problem } from './support/directory-stack';
import { waitFor } from './support/wait-for';

let stack: DirectoryStack;
let gatewayKey: KeyObject;

beforeAll(async () => {
  stack = await startDirectoryStack();
  gatewayKey = createPrivateKey(await readFile(stack.signingKeyFile));
});

afterAll(async () => {
  await stack?.close();
});

/** An assertion as the gateway would sign it, except for what `options` changes. */
async function assertion(
  options: { key?: KeyObject; audience?: string; issuer?: string; expiresAt?: number; userId?: string } = {},
): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ portcullis_sub: 'alice|sub' })
    .setProtectedHeader({ alg: 'EdDSA', typ: 'JWT' })
    .setIssuer(options.issuer ?? 'portcullis')
    .setAudience(options.audience ?? 'portcullis:users')
    .setSubject(options.userId ?? stack.directory!.users.alice)
    .setIssuedAt(now - 120)
    .setExpirationTime(options.expiresAt ?? now + 60)
    .sign(options.key ?? gatewayKey);
}

const direct = <T = unknown>(path: string, headers: Record<string, string> = {}) =>
  fetch(`${stack.service.url}${path}`, { headers }) as Promise<JsonResponse<T>>;

/** The parts of GET /openapi.json these tests read. */
interface OpenApiDocument {
  openapi: string;
  info: Record<string, unknown>;
  components: { securitySchemes: Record<string, unknown> };
  paths: Record<string, Record<string, OpenApiOperation>>;
}
interface OpenApiOperation {
  operationId: string;
  summary: unknown;
  parameters?: { name: string; in: string; required?: boolean }[];
  requestBody?: { content: Record<string, { schema: JsonSchema }> };
  responses: Record<string, { content?: Record<string, { schema: JsonSchema }> }>;
}
type JsonSchema = Record<string, unknown> & { required?: string[] };

describe('a request around the gateway', () => {
  it('is answered 401 problem+json without an assertion, even with the headers the gateway would set', async () => {
    const response = await direct<Problem>('/users/me', { 'x-portcullis-user': stack.directory!.users.alice, 'x-portcullis-org': 'acme' });
    expect(response.status).toBe(401);
    expect(response.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(response.headers.get('www-authenticate')).toMatch(/^Bearer /);
    expect((await response.json()).detail).toMatch(/no x-portcullis-assertion/);
  });

  it('is answered 401 with a forged, expired, wrong-audience or wrong-issuer assertion', async () => {
    const forger = generateKeyPairSync('ed25519').privateKey;
    const now = Math.floor(Date.now() / 1000);
    const cases: [string, string, RegExp][] = [
      ['forged', await assertion({ key: forger }), /signature verification failed/],
      ['expired', await assertion({ expiresAt: now - 60 }), /"exp" claim timestamp check failed/],
      ['for another service', await assertion({ audience: 'portcullis:projects' }), /unexpected "aud" claim value/],
      ['from another issuer', await assertion({ issuer: 'someone-else' }), /unexpected "iss" claim value/],
      ['not a JWT', 'not-a-jwt', /does not verify/],
    ];
    for (const [what, token, detail] of cases) {
      const response = await direct<Problem>('/users/me', { 'x-portcullis-assertion': token });
      expect({ what, status: response.status }).toEqual({ what, status: 401 });
      expect((await response.json()).detail).toMatch(detail);
    }
  });

  it("is served with the gateway's own signature and audience (the control for the cases above)", async () => {
    const response = await direct<User>('/users/me', { 'x-portcullis-assertion': await assertion() });
    expect(response.status).toBe(200);
    expect((await response.json()).id).toBe(stack.directory!.users.alice);
  });
});

describe('GET /openapi.json', () => {
  const operations = directoryOperations({
    db: undefined as never,
    events: new DirectoryEvents(),
    config: { host: '127.0.0.1', port: 0, event_mask: [] },
    logger: pino({ level: 'silent' }),
    fetch,
  });

  it('is an OpenAPI 3.1 document listing every operation of the registry, each with its parameters, body and answer', async () => {
    const response = await direct<OpenApiDocument>('/openapi.json');
    expect(response.status).toBe(200);
    const document = await response.json();
    expect(document.openapi).toBe('3.1.0');
    expect(document.info).toMatchObject({ title: expect.any(String), version: expect.any(String) });
    expect(document.components.securitySchemes.portcullisAssertion).toEqual(
      expect.objectContaining({ type: 'apiKey', in: 'header', name: 'x-portcullis-assertion' }),
    );

    const listed = Object.entries(document.paths).flatMap(([path, methods]) =>
      Object.keys(methods).map((method) => `${method.toUpperCase()} ${path}`),
    );
    const registered = operations.map((operation) => `${operation.method} ${operation.path.replace(/:(\w+)/g, '{$1}')}`);
    expect(listed.sort()).toEqual([...registered].sort());
    expect(registered).toEqual(
      expect.arrayContaining(['PUT /users/me', 'PATCH /users/{user}', 'PUT /users/me/picture', 'GET /orgs/{org}/events']),
    );

    const operationIds = new Set<string>();
    for (const [path, methods] of Object.entries(document.paths)) {
      const templated = [...path.matchAll(/\{(\w+)\}/g)].map((match) => match[1]);
      for (const [method, operation] of Object.entries(methods)) {
        const where = `${method} ${path}`;
        expect({ where, unique: !operationIds.has(operation.operationId) }).toEqual({ where, unique: true });
        operationIds.add(operation.operationId);
        const pathParameters = (operation.parameters ?? []).filter((parameter) => parameter.in === 'path');
        expect({ where, names: pathParameters.map((parameter) => parameter.name).sort() }).toEqual({
          where,
          names: [...templated].sort(),
        });
        expect({ where, required: pathParameters.every((parameter) => parameter.required === true) }).toEqual({
          where,
          required: true,
        });
        expect({ where, summary: typeof operation.summary }).toEqual({ where, summary: 'string' });
        expect(operation.responses.default?.content?.['application/problem+json']?.schema).toEqual({
          $ref: '#/components/schemas/Problem',
        });
        expect(Object.keys(operation.responses).filter((status) => /^[1-5]\d\d$/.test(status))).toHaveLength(1);
      }
    }
  });

  it('derives the schemas from the zod validators (a strict PATCH body, the list query, a picture)', async () => {
    const document = await (await direct<OpenApiDocument>('/openapi.json')).json();
    const patch = document.paths['/users/me']?.patch;
    expect(patch?.requestBody?.content['application/json']?.schema).toMatchObject({
      type: 'object',
      additionalProperties: false,
      properties: { display_name: expect.any(Object), email: expect.objectContaining({ format: 'email' }) },
    });
    expect(patch?.responses['200']?.content?.['application/json']?.schema.required).toEqual(
      expect.arrayContaining(['id', 'email_verified', 'picture_url']),
    );
    const events = document.paths['/orgs/{org}/events']?.get;
    expect(events?.parameters?.find((parameter) => parameter.name === 'limit')).toMatchObject({
      in: 'query',
      required: false,
      schema: { type: 'integer', minimum: 1, maximum: 100, default: 50 },
    });
    expect(Object.keys(document.paths['/users/me/picture']?.put?.requestBody?.content ?? {}).sort()).toEqual([
      'image/jpeg',
      'image/png',
      'image/webp',
    ]);
  });

  it('is reachable through the gateway: every operation has a route there', () => {
    const routes = new Set(defaultRoutes.map((route) => `${route.method} ${route.path}`));
    const unrouted = operations
      .map((operation) => `${operation.method} ${operation.path.replace(/:(\w+)/g, '{$1}')}`)
      .filter((key) => !routes.has(key));
    expect(unrouted).toEqual([]);
  });
});

describe('Idempotency-Key on POST', () => {
  it('answers a retry with the first answer, performing the operation once', async () => {
    const carol = await stack.as('carol');
    const create = () =>
      carol.request('/orgs', {
        method: 'POST',
        headers: { 'idempotency-key': 'create-carolco-1' },
        json: { slug: 'carolco', name: 'Carol Co' },
      });
    const first = await create();
    expect(first.status).toBe(201);
    const body = await first.json();
    const retry = await create();
    expect(retry.status).toBe(201);
    expect(retry.headers.get('idempotent-replayed')).toBe('true');
    expect(await retry.json()).toEqual(body);
    expect(retry.headers.get('location')).toBe(first.headers.get('location'));
    expect(await stack.database.db('organizations').where({ slug: 'carolco' }).count({ n: '*' })).toEqual([{ n: '1' }]);
    expect(
      await stack.database.db('directory_events').where({ organization_slug: 'carolco', target_type: 'organization' }).count({ n: '*' }),
    ).toEqual([{ n: '1' }]);
  });

  it('refuses the same key with another body (422), and another caller may use the same key', async () => {
    const carol = await stack.as('carol');
    const reused = await carol.request<Problem>('/orgs', {
      method: 'POST',
      headers: { 'idempotency-key': 'create-carolco-1' },
      json: { slug: 'carolco-two', name: 'Another' },
    });
    expect(reused.status).toBe(422);
    expect((await reused.json()).detail).toMatch(/Idempotency-Key create-carolco-1 was already used with another request/);
    expect(await stack.database.db('organizations').where({ slug: 'carolco-two' }).count({ n: '*' })).toEqual([{ n: '0' }]);

    const bob = await stack.as('bob');
    const other = await bob.request('/orgs', {
      method: 'POST',
      headers: { 'idempotency-key': 'create-carolco-1' },
      json: { slug: 'bobco', name: 'Bob Co' },
    });
    expect(other.status).toBe(201);
  });
});

describe('Idempotency-Key under concurrent retries', () => {
  it('performs the operation once when the same request arrives twice at the same time', async () => {
    const erin = await stack.as('erin');
    const create = () =>
      erin.request('/orgs', { method: 'POST', headers: { 'idempotency-key': 'erin-parallel' }, json: { slug: 'erinco', name: 'Erin Co' } });
    const statuses = (await Promise.all([create(), create(), create()])).map((response) => response.status);
    // Each is either the answer (201, first or replayed) or "still in progress" (409): never a second organization.
    expect(statuses.filter((status) => status === 201).length).toBeGreaterThanOrEqual(1);
    expect(statuses.every((status) => status === 201 || status === 409)).toBe(true);
    expect(await stack.database.db('organizations').where({ slug: 'erinco' }).count({ n: '*' })).toEqual([{ n: '1' }]);
    expect((await create()).status).toBe(201);
  });
});

describe('pagination', () => {
  it('pages with a cursor that stays stable while newer rows arrive, and refuses a cursor it did not give out', async () => {
    const { acme } = stack.directory!.orgs;
    const insert = (n: number) =>
      stack.database.db('directory_events').insert(
        Array.from({ length: n }, (_, i) => ({
          action: 'test.page',
          organization_id: acme,
          organization_slug: 'acme',
          target_type: 'test',
          target_id: `t${i}`,
        })),
      );
    await insert(5);
    const alice = await stack.as('alice');
    const all = (await (await alice.request<Page<{ id: string }>>('/orgs/acme/events?limit=100')).json()).items.map((item) => item.id);
    expect(all.length).toBeGreaterThanOrEqual(5);
    expect(all.map(Number)).toEqual([...all.map(Number)].sort((a, b) => b - a)); // newest first

    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const response: JsonResponse<Page<{ id: string }>> = await alice.request(
        `/orgs/acme/events?limit=2${cursor ? `&cursor=${cursor}` : ''}`,
      );
      expect(response.status).toBe(200);
      const page = await response.json();
      expect(page.items.length).toBeLessThanOrEqual(2);
      seen.push(...page.items.map((item) => item.id));
      cursor = page.next_cursor;
      if (pages++ === 0) await insert(3); // newer events must not shift the pages that follow
    } while (cursor);
    expect(seen).toEqual(all);

    expect((await alice.request('/orgs/acme/events?cursor=bm90LW1pbmU')).status).toBe(400);
    expect((await alice.request('/orgs/acme/events?limit=101')).status).toBe(400);
  });
});

describe('portcullis directory serve', () => {
  it("serves with the gateway's configuration file, refuses requests without an assertion, and exits 0 on SIGTERM", async () => {
    requireBuild();
    const dir = await mkdtemp(path.join(os.tmpdir(), 'portcullis-directory-serve-'));
    try {
      const file = path.join(dir, 'portcullis.yaml');
      await writeFile(
        file,
        JSON.stringify({
          database: { url: stack.database.url },
          auth: { issuer: 'https://id.test.portcullis', audience: 'portcullis', jwks_file: stack.harness.tokens.jwksFile },
          assertion: { signing_key_file: stack.signingKeyFile },
          services: { users: { url: 'http://127.0.0.1:7010' } },
          directory: { host: '127.0.0.1', port: 0 },
        }),
      );
      const child = spawnCli(['directory', 'serve', '--config', file], { LOG_LEVEL: 'info' });
      let stdout = '';
      child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
      const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
      const url = await waitFor(
        () =>
          /"msg":"the directory service is ready"/.test(stdout) &&
          (JSON.parse(stdout.split('\n').find((line) => line.includes('is ready'))!) as { url: string }).url,
        {
          timeoutMs: 15_000,
          what: 'the directory service to start',
        },
      );
      expect((await fetch(`${url}/healthz`)).status).toBe(200);
      expect((await fetch(`${url}/users/me`)).status).toBe(401);
      const withAssertion = await fetch(`${url}/users/me`, { headers: { 'x-portcullis-assertion': await assertion() } });
      expect(withAssertion.status).toBe(200);
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('the directory section of the configuration', () => {
  const minimal = { auth: { issuer: 'https://id.example.com', audience: 'portcullis', jwks_file: 'jwks.json' }, services: {} };

  it('defaults to 127.0.0.1:7010 with no webhook and no event mask', () => {
    expect(parseConfig(minimal, {}, '/etc/portcullis').directory).toEqual({ host: '127.0.0.1', port: 7010, event_mask: [] });
  });

  it('fetches the gateway keys only over https or on loopback, and refuses unknown keys', () => {
    expect(() =>
      parseConfig({ ...minimal, directory: { gateway_jwks_url: 'http://gateway.internal:9090/.well-known/jwks.json' } }, {}, '/'),
    ).toThrow(/directory\.gateway_jwks_url: must be an https URL \(http only on loopback\)/);
    expect(
      parseConfig({ ...minimal, directory: { gateway_jwks_url: 'http://127.0.0.1:9090/.well-known/jwks.json' } }, {}, '/').directory
        .gateway_jwks_url,
    ).toBe('http://127.0.0.1:9090/.well-known/jwks.json');
    expect(() => parseConfig({ ...minimal, directory: { password_reset_hook: 'https://x' } }, {}, '/')).toThrow(
      /directory: Unrecognized key/,
    );
  });
});
