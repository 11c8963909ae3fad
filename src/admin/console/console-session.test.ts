import { SessionSigner } from './console-session';

describe('console session cookies', () => {
  const secret = Buffer.alloc(32, 7);

  it('accepts its own cookie until it expires, and never after', () => {
    let now = 1_000_000;
    const signer = new SessionSigner({ secret, ttlMs: 60_000, secureCookie: false, now: () => now });
    const { cookie, session } = signer.issue();
    expect(signer.verify(cookie)).toEqual(session);
    now += 59_999;
    expect(signer.verify(cookie)?.id).toBe(session.id);
    now += 1;
    expect(signer.verify(cookie)).toBeUndefined();
  });

  it('refuses a cookie signed with another key, or with its expiry moved', () => {
    const signer = new SessionSigner({ secret, ttlMs: 60_000, secureCookie: false });
    const other = new SessionSigner({ secret: Buffer.alloc(32, 8), ttlMs: 60_000, secureCookie: false });
    const { cookie } = other.issue();
    expect(signer.verify(cookie)).toBeUndefined();
    const own = signer.issue().cookie;
    const [id, expires, mac] = own.split('.');
    expect(signer.verify(`${id}.${Number(expires) + 1}.${mac}`)).toBeUndefined();
    expect(signer.verify(undefined)).toBeUndefined();
    expect(signer.verify('garbage')).toBeUndefined();
  });

  it('gives each session its own CSRF token', () => {
    const signer = new SessionSigner({ secret, ttlMs: 60_000, secureCookie: false });
    expect(signer.issue().session.csrf).not.toBe(signer.issue().session.csrf);
  });
});
