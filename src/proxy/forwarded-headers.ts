// Proxy headers are the gateway's: what an upstream reads about the client's address, the
// host it asked for and its scheme is what the gateway saw, extended from a proxy in front of
// the gateway only when that proxy's address is listed in server.trusted_proxies.
import type { IncomingHttpHeaders } from 'node:http';
import net from 'node:net';
import { headerName } from '../http/inspect-request';

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

/** What the headers say of one peer address, the same for every request it sends. */
interface Peer {
  /** The address as written in the headers (an IPv4-mapped IPv6 address as IPv4). */
  address: string;
  trusted: boolean;
  /** Its RFC 7239 node: `for=` in the gateway's own `Forwarded` element. */
  node: string;
}

/** Distinct peers remembered (a keep-alive client, a load balancer's few addresses); forgotten all at once past this. */
const MAX_PEERS = 1024;

export class ForwardedHeaders {
  private readonly trusted = new net.BlockList();
  private readonly anyTrusted: boolean;
  private readonly peers = new Map<string, Peer>();

  /** `trustedProxies`: addresses or CIDR ranges, already validated by the config schema. */
  constructor(trustedProxies: readonly string[]) {
    for (const entry of trustedProxies) {
      const range = parseAddressRange(entry);
      if (!range) throw new Error(`not an IP address or CIDR range: ${entry}`);
      this.trusted.addSubnet(range.address, range.prefix, range.family);
    }
    this.anyTrusted = trustedProxies.length > 0;
  }

  /**
   * Replaces, in place, every client-sent proxy header with the gateway's own
   * `X-Forwarded-For`, `X-Forwarded-Host`, `X-Forwarded-Proto` and RFC 7239 `Forwarded`.
   * A trusted peer's chains are kept and extended, and its Host/Proto/Port kept.
   */
  apply(headers: IncomingHttpHeaders, hop: Hop): void {
    const peer = hop.peer === undefined ? undefined : this.peer(hop.peer);
    let kept: Map<string, string> | undefined;
    if (peer?.trusted) {
      kept = new Map();
      for (const name of FROM_TRUSTED_PROXY) {
        const value = headers[name];
        if (typeof value === 'string' && value.trim() !== '') kept.set(name, value);
      }
    }
    for (const key of Object.keys(headers)) {
      if (CLIENT_PROXY_HEADERS.has(headerName(key))) delete headers[key];
    }

    const forwardedFor = chained(kept?.get('x-forwarded-for'), peer?.address);
    if (forwardedFor) headers['x-forwarded-for'] = forwardedFor;
    headers.forwarded = chained(kept?.get('forwarded'), forwardedElement(peer?.node ?? 'unknown', hop));
    const host = kept?.get('x-forwarded-host') ?? hop.host;
    if (host !== undefined) headers['x-forwarded-host'] = host;
    headers['x-forwarded-proto'] = kept?.get('x-forwarded-proto') ?? hop.proto;
    const port = kept?.get('x-forwarded-port');
    if (port !== undefined) headers['x-forwarded-port'] = port;
  }

  /** Parsed and checked against the trusted ranges once per address, not once per request. */
  private peer(remoteAddress: string): Peer {
    let peer = this.peers.get(remoteAddress);
    if (!peer) {
      const address = unmapped(remoteAddress);
      const version = net.isIP(address);
      // §6: an IPv6 node is bracketed, and so must be a quoted-string.
      peer = {
        address,
        trusted: this.anyTrusted && version !== 0 && this.trusted.check(address, version === 4 ? 'ipv4' : 'ipv6'),
        node: version === 6 ? `"[${address}]"` : forwardedValue(address),
      };
      if (this.peers.size >= MAX_PEERS) this.peers.clear();
      this.peers.set(remoteAddress, peer);
    }
    return peer;
  }
}

/** A proxy chain (`X-Forwarded-For`, `Forwarded`) as received, extended with the gateway's own entry. */
function chained(received: string | undefined, own: string | undefined): string {
  if (received === undefined) return own ?? '';
  return own === undefined ? received : `${received}, ${own}`;
}

/** `::ffff:127.0.0.1` (an IPv4 client of a dual-stack socket) is written as the IPv4 address it is. */
function unmapped(address: string): string {
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(address);
  return mapped ? mapped[1]! : address;
}

/** One RFC 7239 element describing the hop the gateway received; `node`: the peer's, or "unknown". */
function forwardedElement(node: string, hop: Hop): string {
  const host = hop.host === undefined ? '' : `;host=${forwardedValue(hop.host)}`;
  return `for=${node}${host};proto=${hop.proto}`;
}

/** A token stays as it is; anything else (a `host:port`, for one) becomes a quoted-string. */
function forwardedValue(value: string): string {
  if (/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(value)) return value;
  return `"${value.replace(/["\\]/g, '\\$&')}"`;
}
