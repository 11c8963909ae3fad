// What crosses the gateway: the canonical path, trustworthy identity headers, bodies,
// upstream failures, bad input, and the decision record left by every decision.
import { createLocalJWKSet, jwtVerify } from 'jose';
import { createDatabase } from '../src/db/database';
import { seedDirectory, type Directory } from './support/directory-fixtures';
import type { EchoedRequest } from './support/echo-upstream';
import { startHarness, type Harness } from './support/gateway-harness';
import { rawRequest } from './support/raw-http';
import { waitFor } from './support/wait-for';

let h: Harness;
let dir: Directory;
let alice: string;

beforeAll(async () => {
  h = await startHarness();
  dir = await seedDirectory(h.database.db);
  alice = await h.tokens.sign('alice|sub');
});
afterAll(async () => h?.close());

const echoed = async (res: Response) => {
  expect(res.status).toBe(200);
  return (await res.json()) as EchoedRequest;
};

describe('identity headers', () => {
  it('removes every client-sent x-portcullis-* header and adds the gateway’s own', async () => {
    const seen = await echoed(
      await h.request('/orgs/acme', {
        token: alice,
        headers: {
          'X-Portcullis-User': 'attacker',
          'x-portcullis-org': 'globex',
          'X-PORTCULLIS-DECISION': 'forged',
          'x-portcullis-extra': '1',
        },
      }),
    );
    expect(seen.headers['x-portcullis-user']).toBe(dir.users.alice);
    expect(seen.headers['x-portcullis-org']).toBe('acme');
    expect(seen.headers['x-portcullis-decision']).toMatch(/^[0-9a-f-]{36}$/);
    expect(seen.headers['x-portcullis-extra']).toBeUndefined();
  });

  it('names each decision, and each request without an x-request-id, with a UUIDv7 that sorts in the order of the requests', async () => {
    const first = await h.request('/orgs/acme', { token: alice });
    const second = await h.request('/orgs/acme', { token: alice });
    const v7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
    for (const header of ['x-portcullis-decision', 'x-request-id']) {
      const [a, b] = [first.headers.get(header)!, second.headers.get(header)!];
      expect(a).toMatch(v7);
      expect(b).toMatch(v7);
      expect(a < b).toBe(true);
    }
  });

  it('keeps its headers when the client names them in Connection', async () => {
    const res = await rawRequest(
      h.gateway.gatewayUrl,
      `GET /orgs/acme HTTP/1.1\nHost: x\nAuthorization: Bearer ${alice}\nConnection: close, x-portcullis-user, x-portcullis-assertion\n\n`,
    );
    expect(res.status).toBe(200);
    const seen = JSON.parse(res.body.replace(/^[0-9a-f]+\r\n|\r\n0\r\n\r\n$/g, '')) as EchoedRequest;
    expect(seen.headers['x-portcullis-user']).toBe(dir.users.alice);
    expect(seen.headers['x-portcullis-assertion']).toBeDefined();
  });

  it('adds an assertion the upstream can verify with the keys served on the admin port', async () => {
    const seen = await echoed(await h.request('/orgs/acme/projects/api', { token: alice }));
    const jwks = (await (await fetch(`${h.gateway.adminUrl}/.well-known/jwks.json`)).json()) as Parameters<typeof createLocalJWKSet>[0];
    const { payload } = await jwtVerify(String(seen.headers['x-portcullis-assertion']), createLocalJWKSet(jwks), {
      audience: 'portcullis:projects',
    });
    expect(payload.sub).toBe(dir.users.alice);
    expect(payload.org).toBe('acme');
  });

  it('judges and forwards the real method, whatever a method-override header says', async () => {
    const seen = await echoed(await h.request('/orgs/acme', { token: alice, headers: { 'X-HTTP-Method-Override': 'DELETE' } }));
    expect(seen.method).toBe('GET');
    expect(seen.headers['x-http-method-override']).toBeUndefined();
  });
});

describe('the forwarded path is the judged path', () => {
  it('forwards the canonical form of a messy path, with the query untouched', async () => {
    const seen = await echoed(await h.request('/ORGS/acme//projects/%61pi/?page=2&Sort=Name', { token: alice }));
    expect(seen.url).toBe('/orgs/acme/projects/api?page=2&Sort=Name');
  });

  it.each([
    ['dot segments', '/orgs/acme/projects/../../globex'],
    ['encoded dot segments', '/orgs/acme/projects/%2e%2e/%2E%2E/globex'],
    ['an encoded slash', '/orgs/acme%2fprojects/api'],
    ['an encoded backslash', '/orgs/acme/projects%5capi'],
    ['double encoding', '/orgs/acme/projects/%252e%252e'],
    ['a path parameter', '/orgs/acme/projects/api;x=1'],
    ['an encoded NUL', '/orgs/acme%00/projects'],
  ])('rejects %s with 400 and forwards nothing', async (_name, target) => {
    const before = h.upstreams.projects.received.length + h.upstreams.organizations.received.length;
    const res = await rawRequest(
      h.gateway.gatewayUrl,
      `GET ${target} HTTP/1.1\nHost: x\nAuthorization: Bearer ${alice}\nConnection: close\n\n`,
    );
    expect(res.status).toBe(400);
    expect(res.headers).toMatch(/content-type: application\/problem\+json/i);
    expect(h.upstreams.projects.received.length + h.upstreams.organizations.received.length).toBe(before);
  });

  it('rejects an absolute-form request target', async () => {
    const res = await rawRequest(
      h.gateway.gatewayUrl,
      `GET http://evil.example/orgs/acme HTTP/1.1\nHost: x\nAuthorization: Bearer ${alice}\nConnection: close\n\n`,
    );
    expect(res.status).toBe(400);
  });

  it('rejects duplicate Authorization and Host headers', async () => {
    const auth = await rawRequest(
      h.gateway.gatewayUrl,
      `GET /orgs/acme HTTP/1.1\nHost: x\nAuthorization: Bearer ${alice}\nAuthorization: Bearer other\nConnection: close\n\n`,
    );
    expect(auth.status).toBe(400);
    const host = await rawRequest(
      h.gateway.gatewayUrl,
      `GET /orgs/acme HTTP/1.1\nHost: x\nHost: y\nAuthorization: Bearer ${alice}\nConnection: close\n\n`,
    );
    expect(host.status).toBe(400);
  });
});

describe('bodies and upstream failures', () => {
  it('streams the request body through unchanged', async () => {
    const body = JSON.stringify({ slug: 'new-project', blob: 'x'.repeat(100_000) });
    const seen = await echoed(
      await h.request('/orgs/acme/projects', { method: 'POST', token: alice, body, headers: { 'content-type': 'application/json' } }),
    );
    expect(seen.body).toBe(body);
  });

  it('answers 502 problem+json when the upstream is unreachable', async () => {
    const upstream = h.upstreams.credentials;
    const port = new URL(upstream.url).port;
    await upstream.close();
    const res = await h.request('/orgs/acme/credentials', { token: alice });
    expect(res.status).toBe(502);
    expect(res.headers.get('content-type')).toBe('application/problem+json');
    expect(port).not.toBe('');
  });

  it('answers 504 when the upstream is slower than the configured timeout', async () => {
    h.upstreams.users.handler = () => undefined; // never answers
    try {
      const started = Date.now();
      const res = await h.request('/users/me', { token: alice });
      expect(res.status).toBe(504);
      expect(Date.now() - started).toBeLessThan(5000);
    } finally {
      h.upstreams.users.handler = undefined;
    }
  });
});

describe('decision records', () => {
  it('records every decision, allow and deny, with the id the client saw and without the token', async () => {
    const allowed = await h.request('/orgs/acme', { token: alice });
    const denied = await h.request('/orgs/acme', { method: 'DELETE', token: alice });
    const unauthenticated = await h.request('/orgs/acme');
    const ids = [allowed, denied, unauthenticated].map((res) => res.headers.get('x-portcullis-decision'));
    const rows = await waitFor(
      async () => {
        const found = await h.database.db<Record<string, unknown>>('decisions').whereIn('id', ids as string[]);
        return found.length === 3 && found;
      },
      { what: 'the three decision records' },
    );
    const byId = new Map(rows.map((row) => [row.id, row]));
    expect(byId.get(ids[0])).toMatchObject({
      allow: true,
      status: 200,
      action: 'organization:read',
      organization: 'acme',
      method: 'GET',
      path: '/orgs/acme',
      subject: 'alice|sub',
    });
    expect(byId.get(ids[1])).toMatchObject({ allow: false, status: 409, action: 'organization:delete' });
    expect(byId.get(ids[2])).toMatchObject({ allow: false, status: 401, subject: null });
    expect(byId.get(ids[0])?.policy_revision).toBeTruthy();
    expect(JSON.stringify(rows)).not.toContain(alice);
  });
});

describe('dependencies failing', () => {
  it('fails closed with 503 when PostgreSQL cannot answer', async () => {
    const local = await startHarness();
    try {
      await seedDirectory(local.database.db);
      const token = await local.tokens.sign('alice|sub');
      expect((await local.request('/orgs/acme', { token })).status).toBe(200);
      const adminUrl = process.env.PORTCULLIS_TEST_DATABASE_URL!;
      const name = new URL(local.database.url).pathname.slice(1);
      const admin = createDatabase({ url: adminUrl });
      await admin.raw(`alter database ${name} allow_connections false`);
      await admin.raw(`select pg_terminate_backend(pid) from pg_stat_activity where datname = ?`, [name]);
      try {
        const before = local.upstreams.organizations.received.length;
        // bob's subject was never loaded, so no cache can answer for him.
        const res = await local.request('/orgs/acme', { token: await local.tokens.sign('bob|sub') });
        expect(res.status).toBe(503);
        expect(local.upstreams.organizations.received.length).toBe(before);
      } finally {
        await admin.raw(`alter database ${name} allow_connections true`);
        await admin.destroy();
      }
    } finally {
      await local.close();
    }
  });
});
