import type { IncomingHttpHeaders } from 'node:http';
import { InputError } from '../base/errors';
import { inspectRequest, withoutHopByHop } from './inspect-request';

function request(rawHeaders: string[], httpVersion = '1.1', method = 'POST') {
  return { method, url: '/orgs', rawHeaders, httpVersion };
}

function rejection(rawHeaders: string[], httpVersion = '1.1'): InputError {
  try {
    inspectRequest(request(rawHeaders, httpVersion));
  } catch (error) {
    expect(error).toBeInstanceOf(InputError);
    expect((error as InputError).status).toBe(400);
    return error as InputError;
  }
  throw new Error(`expected ${JSON.stringify(rawHeaders)} to be rejected`);
}

describe('inspectRequest', () => {
  it('accepts an ordinary request', () => {
    expect(() =>
      inspectRequest(request(['Host', 'gw', 'Authorization', 'Bearer a', 'Content-Length', '12', 'Accept', 'a', 'Accept', 'b'])),
    ).not.toThrow();
    expect(() => inspectRequest(request(['host', 'gw', 'transfer-encoding', 'chunked']))).not.toThrow();
    expect(() => inspectRequest(request(['Host', 'gw', 'Transfer-Encoding', ' Chunked ']))).not.toThrow();
  });

  it('rejects a second Authorization header, whatever its case', () => {
    expect(rejection(['Host', 'gw', 'Authorization', 'Bearer a', 'authorization', 'Bearer b']).message).toMatch(
      /more than one Authorization/,
    );
    expect(rejection(['Host', 'gw', 'AUTHORIZATION', 'Bearer a', 'Authorization', 'Bearer a']).message).toMatch(/Authorization/);
  });

  it('rejects a second Host header, whatever its case', () => {
    expect(rejection(['Host', 'a', 'HOST', 'b']).message).toMatch(/more than one Host/);
  });

  it('rejects an HTTP/1.1 request without Host but accepts an HTTP/1.0 one', () => {
    expect(rejection(['Accept', '*/*']).message).toMatch(/must have a Host/);
    expect(() => inspectRequest(request(['Accept', '*/*'], '1.0'))).not.toThrow();
  });

  it('rejects Content-Length together with Transfer-Encoding', () => {
    expect(rejection(['Host', 'gw', 'Content-Length', '5', 'Transfer-Encoding', 'chunked']).message).toMatch(
      /both Content-Length and Transfer-Encoding/,
    );
  });

  it('rejects duplicate Content-Length headers, even when they agree', () => {
    expect(rejection(['Host', 'gw', 'Content-Length', '5', 'content-length', '6']).message).toMatch(/more than one Content-Length/);
    expect(rejection(['Host', 'gw', 'Content-Length', '5', 'Content-Length', '5']).message).toMatch(/more than one Content-Length/);
  });

  it.each(['5, 5', '5,6', '-1', '0x10', '', '1e3'])('rejects the Content-Length value %j', (value) => {
    expect(rejection(['Host', 'gw', 'Content-Length', value]).message).toMatch(/single decimal number/);
  });

  it.each(['gzip, chunked', 'chunked, chunked', 'chunked;x=1', 'identity', 'xchunked', ''])('rejects the Transfer-Encoding %j', (value) => {
    expect(rejection(['Host', 'gw', 'Transfer-Encoding', value]).message).toMatch(/only Transfer-Encoding accepted/);
  });

  it('rejects two Transfer-Encoding headers', () => {
    expect(rejection(['Host', 'gw', 'Transfer-Encoding', 'chunked', 'Transfer-Encoding', 'chunked']).message).toMatch(
      /more than one Transfer-Encoding/,
    );
  });

  it('rejects Transfer-Encoding on an HTTP/1.0 request', () => {
    expect(rejection(['Transfer-Encoding', 'chunked'], '1.0').message).toMatch(/HTTP\/1.0/);
  });

  it('lets method-override headers through inspection (they are stripped before forwarding)', () => {
    expect(() => inspectRequest(request(['Host', 'gw', 'X-HTTP-Method-Override', 'DELETE'], '1.1', 'GET'))).not.toThrow();
  });

  it.each([
    'Transfer_Encoding',
    'transfer_encoding',
    'Content_Length',
    'CONTENT_LENGTH',
    'Keep_Alive',
    'Proxy_Connection',
    'proxy-connection_',
    'Connection_',
    '_Connection',
    '-Connection',
    'Upgrade_',
    'TE_',
    'Trailer-',
    '_Host',
    'Content-Length_',
    '-Transfer-Encoding-',
  ])('rejects the header name %j, a look-alike of a framing or hop-by-hop header', (name) => {
    expect(rejection(['Host', 'gw', name, '5']).message).toMatch(
      /header name .* is refused: it could be read as (content-length|transfer-encoding|keep-alive|proxy-connection|connection|upgrade|te|trailer|host)$/,
    );
  });

  it('accepts the real framing and hop-by-hop headers in any case, and unrelated names with underscores', () => {
    expect(() =>
      inspectRequest(
        request([
          'HOST',
          'gw',
          'content-LENGTH',
          '5',
          'CONNECTION',
          'keep-alive',
          'Keep-Alive',
          'timeout=5',
          'Upgrade',
          'h2c',
          'TE',
          'trailers',
          'X_Api_Key',
          'k',
          'Content_Type_',
          'x',
        ]),
      ),
    ).not.toThrow();
  });

  it.each([
    '/orgs?_method=DELETE',
    '/orgs?_METHOD=x',
    '/orgs?page=2&_Method=PATCH',
    '/orgs?%5Fmethod=DELETE',
    '/orgs?%5fMETHOD=DELETE',
    '/orgs?_%6Dethod=DELETE',
    '/orgs?%255Fmethod=DELETE',
    '/orgs?a=1;_method=DELETE',
    '/orgs?_method',
    '/orgs?_method=',
    '/orgs?_method[]=DELETE',
    '/orgs?.method=DELETE',
    '/orgs?+_method=DELETE',
  ])('rejects the method override in the query %s', (url) => {
    try {
      inspectRequest({ method: 'POST', url, rawHeaders: ['Host', 'gw'], httpVersion: '1.1' });
    } catch (error) {
      expect(error).toBeInstanceOf(InputError);
      expect((error as InputError).status).toBe(400);
      expect((error as InputError).message).toMatch(/query parameter "_method"/);
      return;
    }
    throw new Error(`expected ${url} to be rejected`);
  });

  it.each([
    '/orgs?method=DELETE',
    '/orgs?x_method=DELETE',
    '/orgs?q=_method',
    '/orgs?_methods=1',
    '/orgs?q=%5Fmethod%3D1',
    '/orgs/_method',
    '/orgs?%ZZ_method=1',
  ])('accepts %s, which overrides nothing', (url) => {
    expect(() => inspectRequest({ method: 'POST', url, rawHeaders: ['Host', 'gw'], httpVersion: '1.1' })).not.toThrow();
  });
});

describe('withoutHopByHop', () => {
  const strip = withoutHopByHop;

  it('returns a copy and leaves the headers it was given as they were', () => {
    const headers: IncomingHttpHeaders = { connection: 'keep-alive, x-debug', 'x-debug': '1', accept: '*/*' };
    expect(strip(headers)).toEqual({ accept: '*/*' });
    expect(headers).toEqual({ connection: 'keep-alive, x-debug', 'x-debug': '1', accept: '*/*' });
  });

  it('removes the standard hop-by-hop headers and keeps end-to-end ones', () => {
    expect(
      strip({
        connection: 'keep-alive',
        'keep-alive': 'timeout=5',
        'proxy-connection': 'keep-alive',
        te: 'trailers',
        trailer: 'x-checksum',
        upgrade: 'websocket',
        'transfer-encoding': 'chunked',
        host: 'gw',
        accept: 'application/json',
        authorization: 'Bearer t',
        'content-type': 'application/json',
      }),
    ).toEqual({
      'transfer-encoding': 'chunked',
      host: 'gw',
      accept: 'application/json',
      authorization: 'Bearer t',
      'content-type': 'application/json',
    });
  });

  it('removes every header named in Connection, case-insensitively', () => {
    expect(strip({ connection: 'close, X-Debug ,x-trace', 'x-debug': '1', 'x-trace': '2', 'x-keep': '3' })).toEqual({ 'x-keep': '3' });
    expect(strip({ connection: ['x-a', 'x-b'] as unknown as string, 'x-a': '1', 'x-b': '2', 'x-c': '3' })).toEqual({ 'x-c': '3' });
  });

  it('never lets Connection remove the framing headers or Host', () => {
    expect(strip({ connection: 'content-length, transfer-encoding, host', 'content-length': '5', host: 'gw' })).toEqual({
      'content-length': '5',
      host: 'gw',
    });
  });

  it('removes client-sent x-portcullis-* headers, also spelled with underscores or upper case', () => {
    const headers: IncomingHttpHeaders = {
      'x-portcullis-user': 'forged',
      'x-portcullis-org': 'forged',
      'x-portcullis-assertion': 'forged',
      x_portcullis_user: 'forged',
      'X-Portcullis-Decision': 'forged',
      'x-portcullis': 'not a gateway header',
      accept: '*/*',
    };
    expect(strip(headers)).toEqual({ 'x-portcullis': 'not a gateway header', accept: '*/*' });
  });

  it('removes x-portcullis-* headers even when Connection names them', () => {
    expect(strip({ connection: 'x-portcullis-user', 'x-portcullis-user': 'forged' })).toEqual({});
  });

  it('removes method-override headers', () => {
    expect(
      strip({
        'x-http-method-override': 'DELETE',
        'x-http-method': 'DELETE',
        'x-method-override': 'DELETE',
        x_http_method_override: 'DELETE',
        accept: '*/*',
      }),
    ).toEqual({ accept: '*/*' });
  });

  it('ignores Connection tokens that are not header names', () => {
    expect(strip({ connection: 'x y, , "quoted"', 'x y': '1', accept: '*/*' })).toEqual({ 'x y': '1', accept: '*/*' });
  });
});
