// Hostile input at the gateway port: the gap between what is judged and what is forwarded,
// smuggling and spoofing attempts, oversized or slow requests, forged tokens, and upstreams
// that misbehave mid-response. Every case must fail closed and leave the gateway serving.
import http from 'node:http';
import net from 'node:net';
import { canonicalizeTarget } from '../src/http/normalize-path';
import { InputError } from '../src/base/errors';
import { seedDirectory } from './support/directory-fixtures';
import type { EchoedRequest } from './support/echo-upstream';
import { startHarness, type Harness } from './support/gateway-harness';
import { rawRequest } from './support/raw-http';
import { waitFor } from './support/wait-for';

let h: Harness;
let alice: string;
const BODY_LIMIT = 64 * 1024;

beforeAll(async () => {
  h = await startHarness({
    server: {
      host: '127.0.0.1',
      port: 0,
      upstream_timeout_ms: 2000,
      body_limit_bytes: BODY_LIMIT,
      headers_timeout_ms: 1000,
      request_timeout_ms: 2000,
    },
  });
  await seedDirectory(h.database.db);
  alice = await h.tokens.sign('alice|sub');
});
afterAll(async () => h?.close());

const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
afterAll(() => agent.destroy());

/** Sends a request target exactly as given (no URL normalization), returns status and body. */
function send(target: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  const { port } = new URL(h.gateway.gatewayUrl);
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, path: target, agent, headers: { authorization: `Bearer ${alice}`, ...headers } },
      (res) => {
        let body = '';
        res.on('data', (chunk: Buffer) => (body += chunk.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** A seeded generator, so a failure names a reproducible case. */
function generator(seed: number) {
  let state = seed;
  const next = () => (state = (state * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  return <T>(items: readonly T[]) => items[Math.floor(next() * items.length)]!;
}

describe('the forwarded path always equals the judged path', () => {
  it('holds for 800 generated paths in many encodings (CVE-2019-9901, CVE-2021-29492, CVE-2026-33494 classes)', async () => {
    const pick = generator(20261128);
    // Parameters keep their case: `ACME` and `API` name nothing and are never forwarded.
    const org = ['acme', 'acme', 'AcMe', '%61cme', 'ACME', 'acm%65'];
    const project = ['api', 'API', '%61pi', 'a%70i', 'web', 'W%45B', 'web', 'api'];
    const tail = [
      'run',
      'RUN',
      '.',
      '..',
      '%2e',
      '%2E%2e',
      '%2f',
      '%2F',
      '%5c',
      '%5C',
      '%252e',
      '%25',
      '',
      ';x=1',
      'a;b',
      '%3b',
      '%00',
      '%20',
      'caf%C3%A9',
      '~x',
      'a-b_c',
      '%7e',
      '%41',
      'v1',
      'Logs',
      '%2E',
      'x%2Fy',
    ];
    const separator = ['/', '/', '/', '//'];
    let forwarded = 0;
    let rejected = 0;
    const judged = new Map<string, string>();
    for (let i = 0; i < 800; i += 1) {
      const rest = Array.from({ length: Math.floor(pick([0, 1, 2, 3])) }, () => pick(tail));
      const segments = [
        pick(['orgs', 'orgs', 'ORGS', 'o%72gs']),
        pick(org),
        pick(['projects', 'projects', 'Projects', 'projects/.', 'projects/..']),
        pick(project),
        'pipelines',
        ...rest,
      ];
      const target = `/${segments
        .map((segment) => segment + pick(separator))
        .join('')
        .replace(/\/$/, pick(['', '/']))}${pick(['', '?q=1', '?a=%2e%2e/x'])}`;
      let expected: { path: string; query: string } | undefined;
      try {
        expected = canonicalizeTarget(target);
      } catch (error) {
        expect(error).toBeInstanceOf(InputError);
      }
      const before = h.upstreams.projects.received.length;
      const { status, body } = await send(target);
      if (h.upstreams.projects.received.length === before) {
        expect([target, status >= 400]).toEqual([target, true]);
        rejected += 1;
        continue;
      }
      forwarded += 1;
      expect([target, expected !== undefined]).toEqual([target, true]);
      const seen = JSON.parse(body) as EchoedRequest;
      // The route's literals (orgs, projects, pipelines) match in any case and are forwarded
      // as the route spells them; parameters and the rest keep their case.
      const literalsFolded = expected!.path
        .split('/')
        .map((segment, index) => ([1, 3, 5].includes(index) ? segment.toLowerCase() : segment))
        .join('/');
      expect([target, seen.url]).toEqual([target, literalsFolded + expected!.query]);
      expect(seen.url.startsWith('/orgs/acme/projects/')).toBe(true);
      judged.set(seen.headers['x-portcullis-decision'] as string, seen.url.split('?')[0]!);
    }
    expect(forwarded).toBeGreaterThan(100);
    expect(rejected).toBeGreaterThan(100);
    // The decision record holds the path the policy judged: byte for byte the forwarded one.
    const recorded = await waitFor(
      async () => {
        const rows: { id: string; path: string }[] = await h.database
          .db('decisions')
          .whereIn('id', [...judged.keys()])
          .select('id', 'path');
        return rows.length === judged.size && rows;
      },
      { timeoutMs: 10_000, everyMs: 50, what: `all ${judged.size} decision records` },
    );
    expect(new Map(recorded.map((row) => [row.id, row.path]))).toEqual(judged);
  }, 60_000);
});

describe('spoofing and smuggling', () => {
  it('removes identity headers spelled with underscores or odd case', async () => {
    const res = await send('/orgs/acme', { X_Portcullis_User: 'attacker', 'x-PORTCULLIS-org': 'globex', x_portcullis_decision: 'forged' });
    const seen = JSON.parse(res.body) as EchoedRequest;
    expect(
      Object.keys(seen.headers)
        .filter((name) => /portcullis/i.test(name.replace(/_/g, '-')))
        .sort(),
    ).toEqual(['x-portcullis-assertion', 'x-portcullis-decision', 'x-portcullis-org', 'x-portcullis-user']);
    expect(seen.headers['x-portcullis-org']).toBe('acme');
    expect(seen.headers['x-portcullis-decision']).not.toBe('forged');
  });

  it('answers 400 to Content-Length with Transfer-Encoding and closes the connection', async () => {
    const before = h.upstreams.projects.received.length;
    const res = await rawRequest(
      h.gateway.gatewayUrl,
      `POST /orgs/acme/projects HTTP/1.1\nHost: x\nAuthorization: Bearer ${alice}\nContent-Length: 4\nTransfer-Encoding: chunked\n\n0\n\nGET /orgs/acme HTTP/1.1\nHost: x\n\n`,
    );
    expect(res.status).toBe(400);
    expect(res.raw.match(/HTTP\/1\.1 /g)).toHaveLength(1);
    expect(h.upstreams.projects.received.length).toBe(before);
  });

  it('passes a valid W3C traceparent to the upstream and starts one when there is none', async () => {
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    expect((JSON.parse((await send('/orgs/acme', { traceparent })).body) as EchoedRequest).headers.traceparent).toBe(traceparent);
    expect((JSON.parse((await send('/orgs/acme')).body) as EchoedRequest).headers.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
  });
});

describe('oversized and slow requests', () => {
  it('answers 431 to an oversized header block', async () => {
    expect((await send('/orgs/acme', { 'x-padding': 'p'.repeat(20_000) })).status).toBe(431);
  });

  it('answers 413 to a declared body over the limit, and cuts off a streamed one', async () => {
    const declared = await fetch(`${h.gateway.gatewayUrl}/orgs/acme/projects`, {
      method: 'POST',
      headers: { authorization: `Bearer ${alice}` },
      body: 'x'.repeat(BODY_LIMIT + 1),
    });
    expect(declared.status).toBe(413);
    const streamed = await fetch(`${h.gateway.gatewayUrl}/orgs/acme/projects`, {
      method: 'POST',
      headers: { authorization: `Bearer ${alice}` },
      body: new ReadableStream({
        start(controller) {
          for (let i = 0; i < 4; i += 1) controller.enqueue(new TextEncoder().encode('y'.repeat(BODY_LIMIT / 2)));
          controller.close();
        },
      }),
      duplex: 'half',
    });
    expect(streamed.status).toBe(413);
  });

  it('cuts off a client that never finishes its headers', async () => {
    const { port } = new URL(h.gateway.gatewayUrl);
    const socket = net.connect(Number(port), '127.0.0.1');
    socket.write('GET /orgs/acme HTTP/1.1\r\nHost: x\r\nX-Slow: ');
    const started = Date.now();
    const closed = await new Promise<string>((resolve) => {
      let data = '';
      socket.on('data', (chunk) => (data += chunk.toString()));
      socket.on('close', () => resolve(data));
    });
    expect(Date.now() - started).toBeLessThan(4000);
    expect(closed === '' || /^HTTP\/1\.1 408/.test(closed)).toBe(true);
  });
});

describe('forged tokens', () => {
  it.each([
    ['a kid holding a path', { kid: '../../../../etc/passwd' }],
    ['a kid holding SQL', { kid: "' OR 1=1; --" }],
    ['a 10 KB kid', { kid: 'k'.repeat(10 * 1024) }],
    ['a jku pointing elsewhere', { kid: 'test-key-1', jku: 'http://127.0.0.1:1/jwks.json' }],
    ['an embedded x5c chain', { kid: 'test-key-1', x5c: ['MIIB'] }],
  ])('answers 401 to %s', async (_name, header) => {
    const forged = `${Buffer.from(JSON.stringify({ alg: 'ES256', typ: 'JWT', ...header })).toString('base64url')}.${Buffer.from(JSON.stringify({ sub: 'alice|sub' })).toString('base64url')}.${Buffer.from('sig').toString('base64url')}`;
    const res = await fetch(`${h.gateway.gatewayUrl}/orgs/acme`, { headers: { authorization: `Bearer ${forged}` } });
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toMatch(/^Bearer /);
  });
});

describe('an upstream that resets the connection mid-response', () => {
  it('cuts the client response short and keeps serving', async () => {
    h.upstreams.projects.handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '1000' });
      res.write('{"partial":');
      setTimeout(() => res.socket?.destroy(), 50);
    };
    try {
      await expect(
        fetch(`${h.gateway.gatewayUrl}/orgs/acme/projects`, { headers: { authorization: `Bearer ${alice}` } }).then((res) => res.text()),
      ).rejects.toThrow();
    } finally {
      h.upstreams.projects.handler = undefined;
    }
    expect((await send('/orgs/acme/projects')).status).toBe(200);
  });
});

describe('operator signals', () => {
  it('serves Prometheus metrics with requests by route, action, outcome and status, stage latencies and the policy revision', async () => {
    await send('/orgs/acme');
    await send('/orgs/acme/projects/api', { 'x-nothing': '1' });
    await fetch(`${h.gateway.gatewayUrl}/orgs/acme`);
    const text = await (await fetch(`${h.gateway.adminUrl}/metrics`)).text();
    expect(text).toMatch(
      /portcullis_requests_total\{route="\/orgs\/\{org\}",action="organization:read",outcome="allowed",status="200"\} \d+/,
    );
    expect(text).toMatch(
      /portcullis_requests_total\{route="\/orgs\/\{org\}",action="organization:read",outcome="denied",status="401"\} \d+/,
    );
    for (const stage of ['authentication', 'directory', 'policy', 'upstream'])
      expect(text).toMatch(new RegExp(`portcullis_stage_duration_seconds_count\\{stage="${stage}"\\} [1-9]`));
    expect(text).toMatch(/portcullis_cache_hits\{cache="tokens"\} [1-9]/);
    expect(text).toMatch(/portcullis_policy_info\{revision="[^"]+"\} 1/);
    expect(text).toMatch(/portcullis_audit_backlog \d+/);
  });

  it('reports ready only while the database answers', async () => {
    const ready = await fetch(`${h.gateway.adminUrl}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ checks: { policy: 'ok', database: 'ok' } });
    expect((await fetch(`${h.gateway.adminUrl}/healthz`)).status).toBe(200);
  });
});
