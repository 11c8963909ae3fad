// What reaches an upstream besides the path (issue 10, items 1-3 and 13): the client's
// credentials stop at the gateway unless a service opts in, proxy headers are the gateway's
// own (a trusted proxy's chain is extended), and method overrides or look-alike framing
// headers are refused before anything is judged or forwarded.
import http from 'node:http';
import zlib from 'node:zlib';
import { expect } from '@jest/globals';
import { seedDirectory } from './support/directory-fixtures';
import { startEchoUpstream, type EchoedRequest, type EchoUpstream } from './support/echo-upstream';
import { SERVICES, startHarness, type Harness, type ServiceName } from './support/gateway-harness';
import { rawRequest } from './support/raw-http';

const TRUSTED_PROXY = '127.0.0.2';
/** server.decoded_body_limit_bytes here: 1 MB, so that a few KB of gzip go past it. */
const DECODED_LIMIT = 1_000_000;

let h: Harness;
let upstreams: Record<ServiceName, EchoUpstream>;
let alice: string;
let gatewayHost: string;

beforeAll(async () => {
  // Own upstreams, because the services entries carry per-service settings the harness does not set.
  upstreams = Object.fromEntries(await Promise.all(SERVICES.map(async (name) => [name, await startEchoUpstream(name)] as const))) as Record<
    ServiceName,
    EchoUpstream
  >;
  h = await startHarness({
    server: {
      host: '127.0.0.1',
      port: 0,
      upstream_timeout_ms: 2000,
      trusted_proxies: [`${TRUSTED_PROXY}/32`],
      decoded_body_limit_bytes: DECODED_LIMIT,
    },
    services: {
      organizations: { url: upstreams.organizations.url, forward_authorization: true },
      projects: { url: upstreams.projects.url, forward_cookies: false },
      credentials: { url: upstreams.credentials.url },
      users: { url: upstreams.users.url },
    },
  });
  await seedDirectory(h.database.db);
  alice = await h.tokens.sign('alice|sub');
  gatewayHost = new URL(h.gateway.gatewayUrl).host;
});
afterAll(async () => {
  await h?.close();
  await Promise.all(Object.values(upstreams ?? {}).map((upstream) => upstream.close()));
});

interface Answer {
  status: number;
  contentType: string | undefined;
  body: string;
}

/** A request from a chosen loopback address (the gateway's direct peer), headers sent exactly as named. */
function send(path: string, headers: Record<string, string>, localAddress = '127.0.0.1'): Promise<Answer> {
  const { port } = new URL(h.gateway.gatewayUrl);
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, path, localAddress, agent: false, headers: { authorization: `Bearer ${alice}`, ...headers } },
      (res) => {
        let body = '';
        res.on('data', (chunk: Buffer) => (body += chunk.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, contentType: res.headers['content-type'], body }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

const seen = (answer: Answer): EchoedRequest => {
  expect([answer.status, answer.body]).toEqual([200, expect.any(String)]);
  return JSON.parse(answer.body) as EchoedRequest;
};

const forwardedCount = () => Object.values(upstreams).reduce((sum, upstream) => sum + upstream.received.length, 0);

describe('the client’s credentials stop at the gateway', () => {
  it('removes Authorization by default and keeps cookies; the upstream gets the assertion instead', async () => {
    const echoed = seen(await send('/users/me', { cookie: 'session=abc; theme=dark', 'proxy-authorization': 'Basic Zm9vOmJhcg==' }));
    expect(echoed.service).toBe('users');
    expect(echoed.headers.authorization).toBeUndefined();
    expect(echoed.headers['proxy-authorization']).toBeUndefined();
    expect(echoed.headers.cookie).toBe('session=abc; theme=dark');
    expect(echoed.headers['x-portcullis-assertion']).toMatch(/^ey/);
  });

  it('forwards Authorization to a service with forward_authorization: true', async () => {
    const echoed = seen(await send('/orgs/acme', { cookie: 'session=abc' }));
    expect(echoed.service).toBe('organizations');
    expect(echoed.headers.authorization).toBe(`Bearer ${alice}`);
    expect(echoed.headers.cookie).toBe('session=abc');
  });

  it('drops cookies for a service with forward_cookies: false', async () => {
    const echoed = seen(await send('/orgs/acme/projects/api', { cookie: 'session=abc' }));
    expect(echoed.service).toBe('projects');
    expect(echoed.headers.cookie).toBeUndefined();
    expect(echoed.headers.authorization).toBeUndefined();
    expect(echoed.headers['x-portcullis-assertion']).toMatch(/^ey/);
  });
});

describe('proxy headers are the gateway’s', () => {
  const spoofed = {
    'X-Forwarded-For': '198.51.100.7',
    'X-Forwarded-Host': 'evil.example',
    'X-Forwarded-Proto': 'https',
    'X-Forwarded-Port': '443',
    Forwarded: 'for=198.51.100.7;host=evil.example;proto=https',
    'X-Real-IP': '198.51.100.7',
    'X-Original-URL': '/admin',
    'X-Rewrite-URL': '/admin',
    X_Forwarded_For: '198.51.100.8',
    x_real_ip: '198.51.100.8',
  };

  it('replaces every spoofed proxy header from a client that is not a trusted proxy', async () => {
    const echoed = seen(await send('/users/me', spoofed));
    const proxyHeaders = Object.fromEntries(
      Object.entries(echoed.headers).filter(([name]) => /forwarded|real.ip|original|rewrite/i.test(name)),
    );
    expect(proxyHeaders).toEqual({
      'x-forwarded-for': '127.0.0.1',
      'x-forwarded-host': gatewayHost,
      'x-forwarded-proto': 'http',
      forwarded: `for=127.0.0.1;host="${gatewayHost}";proto=http`,
    });
  });

  it('sets the proxy headers when the client sent none', async () => {
    const echoed = seen(await send('/users/me', {}));
    expect(echoed.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(echoed.headers.forwarded).toBe(`for=127.0.0.1;host="${gatewayHost}";proto=http`);
  });

  it('keeps and extends the chain sent by a trusted proxy, and still drops the rest', async () => {
    const echoed = seen(await send('/users/me', spoofed, TRUSTED_PROXY));
    expect(echoed.headers['x-forwarded-for']).toBe(`198.51.100.7, ${TRUSTED_PROXY}`);
    expect(echoed.headers.forwarded).toBe(
      `for=198.51.100.7;host=evil.example;proto=https, for=${TRUSTED_PROXY};host="${gatewayHost}";proto=http`,
    );
    expect(echoed.headers['x-forwarded-host']).toBe('evil.example');
    expect(echoed.headers['x-forwarded-proto']).toBe('https');
    expect(echoed.headers['x-forwarded-port']).toBe('443');
    for (const name of ['x-real-ip', 'x-original-url', 'x-rewrite-url', 'x_forwarded_for', 'x_real_ip'])
      expect(echoed.headers[name]).toBeUndefined();
  });
});

describe('method overrides in the query string', () => {
  it.each(['/orgs/acme?_method=DELETE', '/orgs/acme?_METHOD=x', '/orgs/acme?page=1&%5Fmethod=DELETE', '/orgs/acme?_Method'])(
    'answers 400 problem+json to %s and forwards nothing',
    async (target) => {
      const before = forwardedCount();
      const answer = await send(target, {});
      expect(answer.status).toBe(400);
      expect(answer.contentType).toMatch(/^application\/problem\+json/);
      expect(JSON.parse(answer.body)).toMatchObject({ status: 400, detail: expect.stringMatching(/_method/) });
      expect(forwardedCount()).toBe(before);
    },
  );

  it('forwards a query that only mentions _method as a value', async () => {
    expect(seen(await send('/orgs/acme?q=_method', {})).url).toBe('/orgs/acme?q=_method');
  });
});

/** A POST with a body, sent in one piece or (with `chunked`) without a Content-Length. */
function post(
  path: string,
  headers: Record<string, string>,
  body: string | Buffer,
  chunked = false,
): Promise<Answer & { connection: string | undefined }> {
  const { port } = new URL(h.gateway.gatewayUrl);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        path,
        method: 'POST',
        agent: false,
        headers: { authorization: `Bearer ${alice}`, ...(chunked ? {} : { 'content-length': Buffer.byteLength(body) }), ...headers },
      },
      (res) => {
        let text = '';
        res.on('data', (chunk: Buffer) => (text += chunk.toString()));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            contentType: res.headers['content-type'],
            body: text,
            connection: res.headers.connection,
          }),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

describe('method overrides in a form or JSON body', () => {
  const FORM = { 'content-type': 'application/x-www-form-urlencoded' };
  const MULTIPART = { 'content-type': 'multipart/form-data; boundary=xyz' };
  const field = (name: string, value: string) => `--xyz\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`;

  const JSON_TYPE = { 'content-type': 'application/json' };

  it.each([
    ['a urlencoded form', FORM, 'name=api&_method=DELETE', false, 'form field'],
    ['a chunked urlencoded form', FORM, 'name=api&%5Fmethod=DELETE', true, 'form field'],
    ['a POST body without a Content-Type', {}, '_method=DELETE', false, 'form field'],
    ['a multipart form', MULTIPART, `${field('name', 'api')}${field('_method', 'DELETE')}--xyz--\r\n`, false, 'form field'],
    // PHP and Rack read a part's name whatever its disposition; busboy skips such a part.
    [
      'a multipart part with an attachment disposition',
      MULTIPART,
      `${field('name', 'api')}--xyz\r\nContent-Disposition: attachment; name="_method"\r\n\r\nDELETE\r\n--xyz--\r\n`,
      true,
      'form field',
    ],
    // Laravel reads a JSON body's top-level members as its input, _method included.
    ['JSON', JSON_TYPE, '{"name":"api","_method":"DELETE"}', false, 'JSON member'],
    ['chunked JSON', JSON_TYPE, '{"name":"api","_method":"DELETE"}', true, 'JSON member'],
  ])(
    'answers 400 problem+json to %s with a _method field; the upstream never gets the whole body',
    async (_name, headers, body, chunked, what) => {
      const before = forwardedCount();
      const answer = await post('/orgs/acme/projects', headers, body, chunked);
      expect(answer.status).toBe(400);
      expect(answer.contentType).toMatch(/^application\/problem\+json/);
      expect(JSON.parse(answer.body)).toMatchObject({
        status: 400,
        detail: `the ${what} "_method" is refused: the gateway judges and forwards the method as sent`,
      });
      expect(answer.connection).toBe('close');
      // The echo upstream keeps a request once its body is complete: give a late one time to land.
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(forwardedCount()).toBe(before);
    },
  );

  it('forwards a form without one, byte for byte', async () => {
    const body = 'name=api&note=_method+is+a+word&x_method=1';
    const echoed = seen(await post('/orgs/acme/projects', FORM, body));
    expect(echoed.method).toBe('POST');
    expect(echoed.body).toBe(body);
  });

  it('forwards JSON whose _method is only nested or a value, byte for byte', async () => {
    const body = '{"name":"api","settings":{"_method":"DELETE"},"note":"_method"}';
    const echoed = seen(await post('/orgs/acme/projects', JSON_TYPE, body));
    expect(echoed.method).toBe('POST');
    expect(echoed.body).toBe(body);
  });

  it('decodes a compressed form to check it: 400 with a _method field, forwarded as it came without', async () => {
    const before = forwardedCount();
    const refused = await post('/orgs/acme/projects', { ...FORM, 'content-encoding': 'gzip' }, zlib.gzipSync('name=api&_method=DELETE'));
    expect(refused.status).toBe(400);
    expect(JSON.parse(refused.body)).toMatchObject({ status: 400, detail: expect.stringMatching(/form field "_method" is refused/) });
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(forwardedCount()).toBe(before);

    const body = zlib.brotliCompressSync('{"name":"api","note":"_method"}');
    const echoed = seen(await post('/orgs/acme/projects', { ...JSON_TYPE, 'content-encoding': 'br' }, body));
    expect(echoed.headers['content-encoding']).toBe('br');
    expect(echoed.body).toBe(body.toString('utf8'));
  });

  it('reads a compressed body up to server.decoded_body_limit_bytes decoded, and answers 413 unread past it', async () => {
    const before = forwardedCount();
    const within = zlib.gzipSync(`name=api&note=${'x'.repeat(DECODED_LIMIT - 100)}`);
    const echoed = seen(await post('/orgs/acme/projects', { ...FORM, 'content-encoding': 'gzip' }, within));
    expect(echoed.body).toBe(within.toString('utf8'));

    // A few KB that decode to twice the limit: refused before the decoder reaches the end.
    const bomb = zlib.gzipSync(`name=api&note=${'x'.repeat(2 * DECODED_LIMIT)}&_method=DELETE`);
    expect(bomb.length).toBeLessThan(10_000);
    const refused = await post('/orgs/acme/projects', { ...FORM, 'content-encoding': 'gzip' }, bomb);
    expect(refused.status).toBe(413);
    expect(JSON.parse(refused.body)).toMatchObject({
      status: 413,
      detail: `the compressed body decodes to more than ${DECODED_LIMIT} bytes; it is refused unread`,
    });
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(forwardedCount()).toBe(before + 1);
  });

  it('answers 415 to a body in a coding it cannot decode, and 400 to one that does not decode', async () => {
    const unknown = await post('/orgs/acme/projects', { ...FORM, 'content-encoding': 'compress' }, 'not really compressed');
    expect(unknown.status).toBe(415);
    expect(JSON.parse(unknown.body)).toMatchObject({ status: 415, detail: expect.stringMatching(/Content-Encoding "compress"/) });
    const corrupt = await post('/orgs/acme/projects', { ...FORM, 'content-encoding': 'gzip' }, 'not really gzip');
    expect(corrupt.status).toBe(400);
    expect(JSON.parse(corrupt.body)).toMatchObject({ status: 400, detail: expect.stringMatching(/cannot be decoded/) });
  });

  it('answers 400 to a request with two Content-Type headers and forwards nothing', async () => {
    const before = forwardedCount();
    const body = '_method=DELETE';
    const answer = await rawRequest(
      h.gateway.gatewayUrl,
      `POST /orgs/acme/projects HTTP/1.1\nHost: x\nAuthorization: Bearer ${alice}\nContent-Type: application/json\nContent-Type: application/x-www-form-urlencoded\nContent-Length: ${body.length}\n\n${body}`,
    );
    expect(answer.status).toBe(400);
    expect(answer.body).toMatch(/more than one Content-Type header/);
    expect(forwardedCount()).toBe(before);
  });
});

describe('look-alike framing and hop-by-hop header names', () => {
  it.each([
    [
      'Transfer_Encoding: chunked',
      'POST /orgs/acme/projects HTTP/1.1\nHost: x\nAuthorization: Bearer TOKEN\nTransfer_Encoding: chunked\nContent-Length: 2\n\n{}',
    ],
    [
      'Content_Length: 5',
      'POST /orgs/acme/projects HTTP/1.1\nHost: x\nAuthorization: Bearer TOKEN\nContent_Length: 5\nTransfer-Encoding: chunked\n\n0\n\n',
    ],
    ['Keep_Alive', 'GET /orgs/acme HTTP/1.1\nHost: x\nAuthorization: Bearer TOKEN\nKeep_Alive: timeout=5\n\n'],
    ['Proxy_Connection', 'GET /orgs/acme HTTP/1.1\nHost: x\nAuthorization: Bearer TOKEN\nProxy_Connection: keep-alive\n\n'],
    ['Connection_', 'GET /orgs/acme HTTP/1.1\nHost: x\nAuthorization: Bearer TOKEN\nConnection_: x-portcullis-user\n\n'],
  ])('answers 400 to %s, closes the connection and forwards nothing', async (_name, request) => {
    const before = forwardedCount();
    const answer = await rawRequest(h.gateway.gatewayUrl, `${request.replace('TOKEN', alice)}GET /orgs/acme HTTP/1.1\nHost: x\n\n`);
    expect(answer.status).toBe(400);
    expect(answer.headers).toMatch(/content-type: application\/problem\+json/i);
    expect(answer.body).toMatch(/header name .* is refused/);
    expect(answer.raw.match(/HTTP\/1\.1 /g)).toHaveLength(1);
    expect(forwardedCount()).toBe(before);
  });
});
