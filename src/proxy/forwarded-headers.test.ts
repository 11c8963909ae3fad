import type { IncomingHttpHeaders } from 'node:http';
import { ForwardedHeaders, parseAddressRange, type Hop } from './forwarded-headers';

const hop = (peer: string | undefined, host: string | undefined = 'api.example.com'): Hop => ({ peer, host, proto: 'http' });
const hostless = (peer: string): Hop => ({ peer, host: undefined, proto: 'http' });

function applied(trusted: string[], headers: IncomingHttpHeaders, at: Hop): IncomingHttpHeaders {
  new ForwardedHeaders(trusted).apply(headers, at);
  return headers;
}

const SPOOFED: IncomingHttpHeaders = {
  'x-forwarded-for': '1.2.3.4',
  'x-forwarded-host': 'evil.example',
  'x-forwarded-proto': 'https',
  'x-forwarded-port': '443',
  forwarded: 'for=1.2.3.4;host=evil.example;proto=https',
  'x-real-ip': '1.2.3.4',
  'x-original-url': '/admin',
  'x-rewrite-url': '/admin',
  x_forwarded_for: '5.6.7.8',
  X_Real_IP: '5.6.7.8',
  'x-client-ip': '1.2.3.4',
  'true-client-ip': '1.2.3.4',
  accept: '*/*',
};

describe('ForwardedHeaders', () => {
  it('replaces every client-sent proxy header (any case, `_` for `-`) with what the gateway saw', () => {
    expect(applied([], { ...SPOOFED }, hop('203.0.113.7', 'gw.example:8080'))).toEqual({
      accept: '*/*',
      'x-forwarded-for': '203.0.113.7',
      'x-forwarded-host': 'gw.example:8080',
      'x-forwarded-proto': 'http',
      forwarded: 'for=203.0.113.7;host="gw.example:8080";proto=http',
    });
  });

  it('ignores the chain of a peer that is not a trusted proxy', () => {
    const headers = applied(['10.0.0.0/8'], { ...SPOOFED }, hop('203.0.113.7'));
    expect(headers['x-forwarded-for']).toBe('203.0.113.7');
    expect(headers.forwarded).toBe('for=203.0.113.7;host=api.example.com;proto=http');
  });

  it('keeps and extends the chain of a trusted proxy, and keeps its host, proto and port', () => {
    const headers = applied(['10.0.0.0/8'], { ...SPOOFED }, hop('10.1.2.3', 'internal-gw:8080'));
    expect(headers).toEqual({
      accept: '*/*',
      'x-forwarded-for': '1.2.3.4, 10.1.2.3',
      'x-forwarded-host': 'evil.example',
      'x-forwarded-proto': 'https',
      'x-forwarded-port': '443',
      forwarded: 'for=1.2.3.4;host=evil.example;proto=https, for=10.1.2.3;host="internal-gw:8080";proto=http',
    });
  });

  it('still drops look-alike spellings and the other client-address headers from a trusted proxy', () => {
    const headers = applied(['10.1.2.3'], { ...SPOOFED }, hop('10.1.2.3'));
    expect(headers.x_forwarded_for).toBeUndefined();
    expect(headers.X_Real_IP).toBeUndefined();
    expect(headers['x-real-ip']).toBeUndefined();
    expect(headers['x-original-url']).toBeUndefined();
  });

  it('sets its own values when a trusted proxy sent none', () => {
    expect(applied(['127.0.0.1'], {}, hop('127.0.0.1'))).toEqual({
      'x-forwarded-for': '127.0.0.1',
      'x-forwarded-host': 'api.example.com',
      'x-forwarded-proto': 'http',
      forwarded: 'for=127.0.0.1;host=api.example.com;proto=http',
    });
  });

  it('writes an IPv4-mapped peer as IPv4 and trusts it by its IPv4 range', () => {
    const headers = applied(['127.0.0.0/8'], { 'x-forwarded-for': '198.51.100.1' }, hop('::ffff:127.0.0.1'));
    expect(headers['x-forwarded-for']).toBe('198.51.100.1, 127.0.0.1');
    expect(headers.forwarded).toBe('for=127.0.0.1;host=api.example.com;proto=http');
  });

  it('brackets and quotes an IPv6 peer in Forwarded (RFC 7239 §6) and trusts IPv6 ranges', () => {
    const headers = applied(['2001:db8::/32'], { forwarded: 'for="[2001:db8:cafe::17]:4711"' }, hop('2001:db8::1'));
    expect(headers['x-forwarded-for']).toBe('2001:db8::1');
    expect(headers.forwarded).toBe('for="[2001:db8:cafe::17]:4711", for="[2001:db8::1]";host=api.example.com;proto=http');
  });

  it('quotes and escapes a Host that is not a token, and omits host= when there is no Host', () => {
    expect(applied([], {}, hop('192.0.2.1', 'a"b\\c')).forwarded).toBe('for=192.0.2.1;host="a\\"b\\\\c";proto=http');
    const headers = applied([], {}, hostless('192.0.2.1'));
    expect(headers.forwarded).toBe('for=192.0.2.1;proto=http');
    expect(headers['x-forwarded-host']).toBeUndefined();
  });

  it('says "unknown" when the peer address is gone, and trusts nothing then', () => {
    const headers = applied(['0.0.0.0/0'], { 'x-forwarded-for': '1.2.3.4' }, hop(undefined));
    expect(headers['x-forwarded-for']).toBeUndefined();
    expect(headers.forwarded).toBe('for=unknown;host=api.example.com;proto=http');
  });

  it('judges each peer by its own address when one instance serves many (what it learns of a peer is kept per address)', () => {
    const forwarded = new ForwardedHeaders(['10.0.0.0/8']);
    const seen = (peer: string) => {
      const headers: IncomingHttpHeaders = { 'x-forwarded-for': '1.2.3.4' };
      forwarded.apply(headers, hop(peer));
      return headers['x-forwarded-for'];
    };
    expect(seen('10.1.2.3')).toBe('1.2.3.4, 10.1.2.3');
    expect(seen('203.0.113.7')).toBe('203.0.113.7');
    expect(seen('::ffff:10.1.2.3')).toBe('1.2.3.4, 10.1.2.3');
    expect(seen('203.0.113.7')).toBe('203.0.113.7');
    expect(seen('10.1.2.3')).toBe('1.2.3.4, 10.1.2.3');
  });

  it('refuses an entry that is not an address or range', () => {
    expect(() => new ForwardedHeaders(['lb.internal'])).toThrow(/lb\.internal/);
  });
});

describe('parseAddressRange', () => {
  it.each([
    ['127.0.0.1', { address: '127.0.0.1', prefix: 32, family: 'ipv4' }],
    ['10.0.0.0/8', { address: '10.0.0.0', prefix: 8, family: 'ipv4' }],
    ['0.0.0.0/0', { address: '0.0.0.0', prefix: 0, family: 'ipv4' }],
    ['::1', { address: '::1', prefix: 128, family: 'ipv6' }],
    ['2001:db8::/32', { address: '2001:db8::', prefix: 32, family: 'ipv6' }],
  ])('parses %s', (text, range) => {
    expect(parseAddressRange(text)).toEqual(range);
  });

  it.each(['', 'localhost', '10.0.0.0/33', '::/129', '10.0.0.0/', '10.0.0.0/8/1', '10.0.0.0/+8', '10.0.0.0/ 8', '010.0.0.1', '1.2.3.4 '])(
    'rejects %j',
    (text) => {
      expect(parseAddressRange(text)).toBeUndefined();
    },
  );
});
