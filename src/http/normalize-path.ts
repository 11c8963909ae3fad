// Canonical request targets (design §2, §3.5): the one path that the route table matches,
// the policy judges and the upstream receives. Anything ambiguous is refused rather than
// repaired, since every repair is a place where two parsers can disagree (CVE-2019-9901
// `..`/`%2e`, CVE-2021-29492 `%2F`/`%5C`, CVE-2026-33494 encoded dot segments).
//
// Canonical form: no empty or dot segments, no trailing slash (except `/`), percent-encoded
// unreserved characters decoded, every remaining escape written with upper-case hex
// (`%C3%A9`) and forming valid UTF-8. Letter case is kept: identifiers are case-sensitive
// (the route table folds only its literal segments). Canonicalizing a canonical path
// returns it unchanged.
import { InputError } from '../base/errors';

export const MAX_PATH_LENGTH = 2048;
export const MAX_PATH_SEGMENTS = 64;

export interface CanonicalTarget {
  /** The canonical path the route table matches; its match (RouteMatch.path) is judged and forwarded. */
  path: string;
  /** The raw query string including its leading `?`, or `''`; never rewritten. */
  query: string;
}

const SLASH = 0x2f;
const PERCENT = 0x25;
const HEX_DIGITS = '0123456789ABCDEF';

/** RFC 3986 unreserved: ALPHA DIGIT - . _ ~ (decoded when percent-encoded). */
const UNRESERVED = byteSet('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~');
/** pchar minus `;` (path parameters such as `..;/` are read differently by Java servers). */
const RAW_ALLOWED = byteSet("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,=:@");

/**
 * Splits an origin-form request target into its canonical path and untouched query.
 * Throws InputError (400) for any target that could be read two ways.
 */
export function canonicalizeTarget(rawUrl: string): CanonicalTarget {
  if (rawUrl.charCodeAt(0) !== SLASH) {
    throw new InputError('the request target must be a path starting with "/" (absolute-form, authority-form and "*" are not accepted)');
  }
  if (rawUrl.includes('#')) throw new InputError('the request target must not contain a fragment ("#")');

  const queryStart = rawUrl.indexOf('?');
  const rawPath = queryStart === -1 ? rawUrl : rawUrl.slice(0, queryStart);
  const query = queryStart === -1 ? '' : rawUrl.slice(queryStart);
  for (let i = 0; i < query.length; i++) {
    if (isControl(query.charCodeAt(i))) throw new InputError('the query string contains a control character');
  }
  if (rawPath.length > MAX_PATH_LENGTH) throw new InputError(`the request path is longer than ${MAX_PATH_LENGTH} characters`);

  const segments: string[] = [];
  let start = 0;
  while (start < rawPath.length) {
    let end = rawPath.indexOf('/', start + 1);
    if (end === -1) end = rawPath.length;
    // Empty segments vanish: repeated and trailing slashes collapse.
    if (end > start + 1) {
      const segment = canonicalSegment(rawPath, start + 1, end);
      if (segment === '.' || segment === '..') {
        throw new InputError('the request path contains a "." or ".." segment (also when percent-encoded)');
      }
      if (segments.push(segment) > MAX_PATH_SEGMENTS) throw new InputError(`the request path has more than ${MAX_PATH_SEGMENTS} segments`);
    }
    start = end;
  }

  return { path: '/' + segments.join('/'), query };
}

/** The canonical text of `raw[from, to)`, a segment without slashes. */
function canonicalSegment(raw: string, from: number, to: number): string {
  let i = from;
  // Fast path: a segment without escapes is already canonical; it is sliced, not rebuilt.
  while (i < to && RAW_ALLOWED[raw.charCodeAt(i)]) i++;
  if (i === to) return raw.slice(from, to);

  let segment = raw.slice(from, i);
  const utf8 = new Utf8Check();
  for (; i < to; i++) {
    const code = raw.charCodeAt(i);
    if (code === PERCENT) {
      const high = hexValue(raw.charCodeAt(i + 1));
      const low = hexValue(raw.charCodeAt(i + 2));
      if (i + 2 >= to || high < 0 || low < 0)
        throw new InputError('the request path contains a "%" that is not followed by two hex digits');
      const byte = high * 16 + low;
      i += 2;
      utf8.byte(byte);
      if (UNRESERVED[byte]) segment += String.fromCharCode(byte);
      else {
        rejectEncoded(byte);
        segment += '%' + HEX_DIGITS.charAt(high) + HEX_DIGITS.charAt(low);
      }
    } else if (code < 0x80 && RAW_ALLOWED[code]) {
      utf8.byte(code);
      segment += String.fromCharCode(code);
    } else {
      throw new InputError(`the request path contains ${describeRaw(code)}`);
    }
  }
  utf8.end();
  return segment;
}

/**
 * Percent-encoded bytes must spell valid UTF-8 (RFC 3629): an overlong form (`%C0%AF` for
 * `/`), a surrogate or a truncated sequence is read as different characters by different
 * decoders, the very ambiguity canonicalization exists to refuse.
 */
class Utf8Check {
  private pending = 0;
  private codePoint = 0;
  private minimum = 0;

  byte(byte: number): void {
    if (byte < 0x80) {
      if (this.pending > 0) throw invalidUtf8('a truncated multi-byte sequence');
      return;
    }
    if (byte < 0xc0) {
      if (this.pending === 0) throw invalidUtf8('a continuation byte without a lead byte');
      this.codePoint = (this.codePoint << 6) | (byte & 0x3f);
      if (--this.pending === 0) this.complete();
      return;
    }
    if (this.pending > 0) throw invalidUtf8('a truncated multi-byte sequence');
    if (byte < 0xc2) throw invalidUtf8('an overlong encoding');
    if (byte < 0xe0) this.start(1, byte & 0x1f, 0x80);
    else if (byte < 0xf0) this.start(2, byte & 0x0f, 0x800);
    else if (byte < 0xf5) this.start(3, byte & 0x07, 0x10000);
    else throw invalidUtf8(`the byte 0x${byte.toString(16).toUpperCase()}, which UTF-8 never uses`);
  }

  /** The segment ended: a sequence still open was truncated. */
  end(): void {
    if (this.pending > 0) throw invalidUtf8('a truncated multi-byte sequence');
  }

  private start(pending: number, bits: number, minimum: number): void {
    this.pending = pending;
    this.codePoint = bits;
    this.minimum = minimum;
  }

  private complete(): void {
    if (this.codePoint < this.minimum) throw invalidUtf8('an overlong encoding');
    if (this.codePoint >= 0xd800 && this.codePoint <= 0xdfff) throw invalidUtf8('an encoded surrogate');
    if (this.codePoint > 0x10ffff) throw invalidUtf8('a code point above U+10FFFF');
  }
}

function invalidUtf8(what: string): InputError {
  return new InputError(`the request path contains percent-encoded bytes that are not valid UTF-8 (${what})`);
}

/** A canonical segment's text: every escape decoded. Canonical segments are valid UTF-8. */
export function decodeSegment(segment: string): string {
  return segment.includes('%') ? decodeURIComponent(segment) : segment;
}

function rejectEncoded(byte: number): void {
  switch (byte) {
    case 0x2f:
      throw new InputError('the request path contains an encoded slash ("%2F")');
    case 0x5c:
      throw new InputError('the request path contains an encoded backslash ("%5C")');
    case 0x3b:
      throw new InputError('the request path contains an encoded semicolon ("%3B")');
    case 0x25:
      throw new InputError('the request path contains an encoded percent sign ("%25"): double encoding is not accepted');
    case 0x00:
      throw new InputError('the request path contains an encoded NUL ("%00")');
  }
  if (isControl(byte)) throw new InputError('the request path contains an encoded control character');
}

function describeRaw(code: number): string {
  if (isControl(code)) return 'a control character';
  if (code === 0x20) return 'a space';
  if (code === 0x5c) return 'a backslash ("\\")';
  if (code === 0x3b) return 'a semicolon (";"): path parameters are not accepted';
  if (code > 0x7f) return 'a non-ASCII character (percent-encode it)';
  return `the character "${String.fromCharCode(code)}", which must be percent-encoded`;
}

function isControl(code: number): boolean {
  return code < 0x20 || code === 0x7f;
}

function hexValue(code: number): number {
  if (code >= 0x30 && code <= 0x39) return code - 0x30;
  if (code >= 0x41 && code <= 0x46) return code - 0x37;
  if (code >= 0x61 && code <= 0x66) return code - 0x57;
  return -1;
}

function byteSet(chars: string): boolean[] {
  const set = new Array<boolean>(256).fill(false);
  for (let i = 0; i < chars.length; i++) set[chars.charCodeAt(i)] = true;
  return set;
}
