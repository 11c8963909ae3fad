// Header hygiene at the edge. inspectRequest refuses messages whose framing, identity or
// method two HTTP parsers could read differently (request smuggling, a second Authorization
// that Node drops but an upstream might read, a `_method` override); withoutHopByHop cleans the
// headers just before the gateway adds its own identity headers and forwards.
import type { IncomingHttpHeaders } from 'node:http';
import { InputError } from '../base/errors';

export interface InspectedRequest {
  method: string;
  url: string;
  /** Node's `req.rawHeaders`: name, value, name, value… as received, duplicates included. */
  rawHeaders: readonly string[];
  httpVersion: string;
}

/** RFC 9110 §7.6.1 and RFC 9112 connection-specific fields (transfer-encoding is left to Node's client). */
const HOP_BY_HOP = new Set(['connection', 'proxy-connection', 'keep-alive', 'te', 'trailer', 'upgrade']);
/** Frameworks that honour these would run a different method than the one the policy judged. */
const METHOD_OVERRIDES = new Set(['x-http-method-override', 'x-http-method', 'x-method-override']);
/** Framing and routing fields a `Connection:` token must never remove (that would re-frame the body upstream). */
const CONNECTION_PROTECTED = new Set(['host', 'content-length', 'transfer-encoding']);
/** Fields whose look-alikes (`Transfer_Encoding`, `-Connection`) an upstream stack might read as the real thing. */
const LOOK_ALIKE_PROTECTED = new Set([...HOP_BY_HOP, ...CONNECTION_PROTECTED]);
const GATEWAY_PREFIX = 'x-portcullis-';
const TOKEN = /^[!#$%&'*+.^_`|~0-9a-z-]+$/;

/** Throws InputError (400) for ambiguous framing, look-alike framing or hop-by-hop names, duplicated identity or type headers or a `_method` parameter. */
export function inspectRequest(req: InspectedRequest): void {
  if (hasMethodOverrideParameter(req.url)) {
    throw new InputError('the query parameter "_method" is refused: the gateway judges and forwards the method as sent');
  }
  // One pass, no map: this runs on every request. Only the framing headers' values are kept.
  let hosts = 0;
  let authorizations = 0;
  let contentTypes = 0;
  const lengths: string[] = [];
  const encodings: string[] = [];
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i]!.toLowerCase();
    // Node keys `Content_Length` apart from `Content-Length`, but CGI, WSGI and Rack merge `_`
    // into `-`: such a name could frame the body, or add a hop-by-hop field, behind the gateway.
    if (name.includes('_') || name.startsWith('-') || name.endsWith('-')) {
      const lookAlike = name.replace(/_/g, '-').replace(/^-+|-+$/g, '');
      if (lookAlike !== name && LOOK_ALIKE_PROTECTED.has(lookAlike)) {
        throw new InputError(`the header name "${req.rawHeaders[i]}" is refused: it could be read as ${lookAlike}`);
      }
    }
    if (name === 'host') hosts += 1;
    else if (name === 'authorization') authorizations += 1;
    else if (name === 'content-type') contentTypes += 1;
    else if (name === 'content-length') lengths.push(req.rawHeaders[i + 1]!);
    else if (name === 'transfer-encoding') encodings.push(req.rawHeaders[i + 1]!);
  }

  if (hosts > 1) throw new InputError('the request has more than one Host header');
  if (hosts === 0 && req.httpVersion === '1.1') throw new InputError('an HTTP/1.1 request must have a Host header');
  if (authorizations > 1) throw new InputError('the request has more than one Authorization header');
  // Node keeps the first, an upstream might read the last: JSON to the gateway, a form behind it.
  if (contentTypes > 1) throw new InputError('the request has more than one Content-Type header');

  if (lengths.length > 0 && encodings.length > 0) throw new InputError('the request has both Content-Length and Transfer-Encoding');
  if (lengths.length > 0) {
    if (lengths.length > 1) throw new InputError('the request has more than one Content-Length header');
    if (!/^[0-9]+$/.test(lengths[0]!.trim())) throw new InputError('the Content-Length header is not a single decimal number');
  }
  if (encodings.length > 0) {
    if (encodings.length > 1) throw new InputError('the request has more than one Transfer-Encoding header');
    if (encodings[0]!.trim().toLowerCase() !== 'chunked') throw new InputError('the only Transfer-Encoding accepted is "chunked"');
    if (req.httpVersion === '1.0') throw new InputError('an HTTP/1.0 request must not use Transfer-Encoding');
  }
}

/**
 * A header name as an upstream stack might read it: lower-case, with `_` read as `-` (CGI, WSGI
 * and Rack merge `X_Portcullis_User` into `X-Portcullis-User`).
 */
export function headerName(key: string): string {
  const name = key.toLowerCase();
  return name.includes('_') ? name.replace(/_/g, '-') : name;
}

/** True when the query has a `_method` parameter, as isMethodOverrideName reads a name. */
function hasMethodOverrideParameter(url: string): boolean {
  const start = url.indexOf('?');
  if (start === -1) return false;
  for (const pair of url.slice(start + 1).split(/[&;]/)) {
    if (isMethodOverrideName(pair.split('=', 1)[0]!.replace(/\+/g, ' '))) return true;
  }
  return false;
}

/**
 * True when a query or form field name is `_method` as Rails, Laravel, Symfony or Express's
 * method-override would read it: any case, percent-encoded (also twice), and PHP's rewriting of
 * `.`, space and `[` in names to `_` (`_method[]` too).
 */
export function isMethodOverrideName(raw: string): boolean {
  let name = raw;
  for (let decoded = percentDecode(name); decoded !== name; decoded = percentDecode(name)) name = decoded;
  const key = name
    .trim()
    .toLowerCase()
    .replace(/\[[^\]]*\].*$/, '')
    .replace(/[ .[]/g, '_');
  return key === '_method';
}

/** Byte-wise and tolerant: an invalid escape stays as it is (only ASCII names matter here). */
function percentDecode(text: string): string {
  return text.replace(/%([0-9a-fA-F]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

/**
 * The headers without any that must not reach the upstream: hop-by-hop fields and
 * those named by `Connection:`, method-override headers, and any client-sent
 * `x-portcullis-*` header. Names are compared case-insensitively with `_` read as `-`,
 * because some upstream stacks (CGI, WSGI, Rack) merge `X_Portcullis_User` into
 * `X-Portcullis-User`. The gateway adds its own identity headers after this. A copy, not
 * deletions in place: deleting properties turns the parser's object into a slow dictionary for
 * everything that reads it afterwards (the proxy copies it once more).
 */
export function withoutHopByHop(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const connection = headers.connection as string | string[] | undefined;
  let listed: Set<string> | undefined;
  if (connection !== undefined) {
    for (const raw of (Array.isArray(connection) ? connection.join(',') : connection).split(',')) {
      const token = raw.trim().toLowerCase();
      if (TOKEN.test(token) && !CONNECTION_PROTECTED.has(token)) (listed ??= new Set()).add(token);
    }
  }
  const kept: IncomingHttpHeaders = {};
  for (const key of Object.keys(headers)) {
    const name = headerName(key);
    if (listed?.has(key) || HOP_BY_HOP.has(name) || METHOD_OVERRIDES.has(name) || name.startsWith(GATEWAY_PREFIX)) continue;
    kept[key] = headers[key];
  }
  return kept;
}
