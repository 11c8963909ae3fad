// Console sessions: the sign-in form trades the admin token for a cookie holding a random
// session id and its expiry, signed with HMAC-SHA256; nothing is stored server-side, so any
// instance sharing `admin.console.session_secret` accepts it. Each session has a CSRF token
// derived from its id (a synchronizer token every POST form carries), and every page gets a
// strict Content-Security-Policy.
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { NextFunction, Request, Response } from 'express';

export const SESSION_COOKIE = 'portcullis_console';

export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ');

export interface ConsoleSession {
  id: string;
  expiresAt: number;
  csrf: string;
}

export interface SessionOptions {
  /** HMAC key; at least 32 bytes. */
  secret: Buffer;
  ttlMs: number;
  /** Mark the cookie Secure even over plain HTTP (TLS terminated in front of the admin port). */
  secureCookie: boolean;
  now?: () => number;
}

export class SessionSigner {
  private readonly now: () => number;

  constructor(private readonly options: SessionOptions) {
    this.now = options.now ?? Date.now;
  }

  /** A new session: the cookie's value, and the session it stands for. */
  issue(): { cookie: string; session: ConsoleSession } {
    const id = randomBytes(18).toString('base64url');
    const expiresAt = this.now() + this.options.ttlMs;
    const payload = `${id}.${expiresAt}`;
    return { cookie: `${payload}.${this.mac(`session:${payload}`)}`, session: { id, expiresAt, csrf: this.csrfFor(id) } };
  }

  /** The session a cookie value stands for, or undefined when it is forged, malformed or expired. */
  verify(cookie: string | undefined): ConsoleSession | undefined {
    const match = cookie ? /^([\w-]{24})\.(\d{1,16})\.([\w-]{43})$/.exec(cookie) : null;
    if (!match) return undefined;
    const [, id, expires, mac] = match as unknown as [string, string, string, string];
    if (!equal(mac, this.mac(`session:${id}.${expires}`))) return undefined;
    const expiresAt = Number(expires);
    if (expiresAt <= this.now()) return undefined;
    return { id, expiresAt, csrf: this.csrfFor(id) };
  }

  /** Set-Cookie attributes: HttpOnly, SameSite=Strict, scoped to the console, Secure over TLS. */
  cookieAttributes(req: Request, maxAgeMs: number): string {
    const secure = this.options.secureCookie || req.secure ? '; Secure' : '';
    return `Path=/console; HttpOnly; SameSite=Strict; Max-Age=${Math.max(0, Math.floor(maxAgeMs / 1000))}${secure}`;
  }

  get ttlMs(): number {
    return this.options.ttlMs;
  }

  private csrfFor(id: string): string {
    return this.mac(`csrf:${id}`);
  }

  private mac(text: string): string {
    return createHmac('sha256', this.options.secret).update(text).digest('base64url');
  }
}

/** The admin token a sign-in form presented, compared in constant time (hashes first: lengths never leak). */
export function tokenMatches(presented: string, expected: string | undefined): boolean {
  if (!expected || !presented) return false;
  return timingSafeEqual(digest(presented), digest(expected));
}

export function readCookie(req: Request, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** Every console response: the CSP, no framing, no sniffing, no caching of authenticated pages. */
export function securityHeaders(_req: Request, res: Response, next: NextFunction): void {
  res.setHeader('content-security-policy', CONTENT_SECURITY_POLICY);
  res.setHeader('x-content-type-options', 'nosniff');
  res.setHeader('x-frame-options', 'DENY');
  res.setHeader('referrer-policy', 'same-origin');
  res.setHeader('cache-control', 'no-store');
  next();
}

/** True when a POST's form field `csrf` is this session's token. */
export function csrfMatches(session: ConsoleSession, presented: unknown): boolean {
  return typeof presented === 'string' && equal(presented, session.csrf);
}

function equal(a: string, b: string): boolean {
  return timingSafeEqual(digest(a), digest(b));
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}
