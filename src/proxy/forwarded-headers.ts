// Proxy headers are the gateway's: what an upstream reads about the client's address, the
// host it asked for and its scheme is what the gateway saw, extended from a proxy in front of
// the gateway only when that proxy's address is listed in server.trusted_proxies.
import type { IncomingHttpHeaders } from 'node:http';
import net from 'node:net';

/**
 * Never forwarded as the client sent them, in any case and with `_` for `-` (CGI, WSGI and
 * Rack read `X_Forwarded_For` as `X-Forwarded-For`): an upstream that logs, rate-limits or
 * builds redirects and absolute URLs from these would otherwise trust the client's word.
 */
const CLIENT_PROXY_HEADERS = new Set([
  'forwarded',
  'x-forwarded-for',
  'x-forwarded-host',
  'x-forwarded-proto',
  'x-forwarded-port',
  'x-forwarded-prefix',
  'x-forwarded-server',
  'x-forwarded-scheme',
  'x-forwarded-ssl',
  'x-forwarded-uri',
  'x-real-ip',
  'x-client-ip',
  'true-client-ip',
  'x-cluster-client-ip',
  'cf-connecting-ip',
  'fastly-client-ip',
  'x-original-url',
  'x-original-uri',
  'x-original-host',
  'x-rewrite-url',
  'x-host',
  'x-url-scheme',
  'front-end-https',
]);

/** What a trusted proxy may tell the upstream; the two chains are extended with the proxy's own address. */
const FROM_TRUSTED_PROXY = ['forwarded', 'x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto', 'x-forwarded-port'] as const;

/** The connection as the gateway saw it. */
export interface Hop {
  /** The direct peer's address (`req.socket.remoteAddress`); undefined once the socket is gone. */
  peer: string | undefined;
  /** The Host header the gateway received (absent on an HTTP/1.0 request without one). */
  host: string | undefined;
  proto: 'http' | 'https';
}

export interface AddressRange {
  address: string;
  prefix: number;
  family: 'ipv4' | 'ipv6';
}

/** Parses `10.0.0.0/8`, `2001:db8::/32` or a single address; undefined when it is neither. */
export function parseAddressRange(text: string): AddressRange | undefined {
  const [address = '', prefixText, ...rest] = text.split('/');
  const version = net.isIP(address);
  if (version === 0 || rest.length > 0) return undefined;
  const bits = version === 4 ? 32 : 128;
  if (prefixText !== undefined && !/^[0-9]{1,3}$/.test(prefixText)) return undefined;
  const prefix = prefixText === undefined ? bits : Number(prefixText);
  if (prefix > bits) return undefined;
  return { address, prefix, family: version === 4 ? 'ipv4' : 'ipv6' };
}

export class ForwardedHeaders {
  private readonly trusted = new net.BlockList();

  /** `trustedProxies`: addresses or CIDR ranges, already validated by the config schema. */
  constructor(trustedProxies: readonly string[]) {
    for (const entry of trustedProxies) {
      const range = parseAddressRange(entry);
      if (!range) throw new Error(`not an IP address or CIDR range: ${entry}`);
      this.trusted.addSubnet(range.address, range.prefix, range.family);
    }
  }

  /**
   * Replaces, in place, every client-sent proxy header with the gateway's own
   * `X-Forwarded-For`, `X-Forwarded-Host`, `X-Forwarded-Proto` and RFC 7239 `Forwarded`.
   * A trusted peer's chains are kept and extended, and its Host/Proto/Port kept.
   */
  apply(headers: IncomingHttpHeaders, hop: Hop): void {
    const peer = hop.peer === undefined ? undefined : unmapped(hop.peer);
    const trusted = peer !== undefined && net.isIP(peer) !== 0 && this.trusted.check(peer, net.isIP(peer) === 4 ? 'ipv4' : 'ipv6');
    const kept = new Map<string, string>();
    if (trusted) {
      for (const name of FROM_TRUSTED_PROXY) {
        const value = headers[name];
        if (typeof value === 'string' && value.trim() !== '') kept.set(name, value);
      }
    }
    for (const key of Object.keys(headers)) {
      if (CLIENT_PROXY_HEADERS.has(key.toLowerCase().replace(/_/g, '-'))) delete headers[key];
    }

    const chain = (name: string, own: string | undefined) => [kept.get(name), own].filter((item) => item !== undefined).join(', ');
    const forwardedFor = chain('x-forwarded-for', peer);
    if (forwardedFor) headers['x-forwarded-for'] = forwardedFor;
    headers.forwarded = chain('forwarded', forwardedElement(peer, hop));
    const host = kept.get('x-forwarded-host') ?? hop.host;
    if (host !== undefined) headers['x-forwarded-host'] = host;
    headers['x-forwarded-proto'] = kept.get('x-forwarded-proto') ?? hop.proto;
    const port = kept.get('x-forwarded-port');
    if (port !== undefined) headers['x-forwarded-port'] = port;
  }
}

/** `::ffff:127.0.0.1` (an IPv4 client of a dual-stack socket) is written as the IPv4 address it is. */
function unmapped(address: string): string {
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(address);
  return mapped ? mapped[1]! : address;
}

/** One RFC 7239 element describing the hop the gateway received. */
function forwardedElement(peer: string | undefined, hop: Hop): string {
  // §6: an IPv6 node is bracketed, and so must be a quoted-string; an unknown one is "unknown".
  const node = peer === undefined ? 'unknown' : net.isIPv6(peer) ? `"[${peer}]"` : forwardedValue(peer);
  const pairs = [`for=${node}`];
  if (hop.host !== undefined) pairs.push(`host=${forwardedValue(hop.host)}`);
  pairs.push(`proto=${hop.proto}`);
  return pairs.join(';');
}

/** A token stays as it is; anything else (a `host:port`, for one) becomes a quoted-string. */
function forwardedValue(value: string): string {
  if (/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(value)) return value;
  return `"${value.replace(/["\\]/g, '\\$&')}"`;
}
