// The pure parts of the directory's HTTP semantics: canonical ETags and If-Match/If-None-Match.
import { expect } from '@jest/globals';
import { canonicalJson, etagOf, notModified, requireIfMatch } from './http-semantics';

describe('etagOf', () => {
  it('is a strong ETag that ignores key order but not values', () => {
    expect(etagOf({ a: 1, b: { c: 2, d: [3, 4] } })).toMatch(/^"[A-Za-z0-9_-]{43}"$/);
    expect(etagOf({ b: { d: [3, 4], c: 2 }, a: 1 })).toBe(etagOf({ a: 1, b: { c: 2, d: [3, 4] } }));
    expect(etagOf({ a: 1, b: { c: 2, d: [4, 3] } })).not.toBe(etagOf({ a: 1, b: { c: 2, d: [3, 4] } }));
    expect(canonicalJson({ z: null, a: 'x' })).toBe('{"a":"x","z":null}');
  });
});

describe('requireIfMatch', () => {
  const current = etagOf({ id: 1 });
  it('passes without If-Match, with the current ETag (also in a list) and with *', () => {
    expect(() => requireIfMatch({}, current)).not.toThrow();
    expect(() => requireIfMatch({ 'if-match': current }, current)).not.toThrow();
    expect(() => requireIfMatch({ 'if-match': `"other", ${current}` }, current)).not.toThrow();
    expect(() => requireIfMatch({ 'if-match': '*' }, current)).not.toThrow();
  });

  it('refuses a stale or weak ETag with 412', () => {
    expect(() => requireIfMatch({ 'if-match': etagOf({ id: 2 }) }, current)).toThrow(expect.objectContaining({ status: 412 }));
    expect(() => requireIfMatch({ 'if-match': `W/${current}` }, current)).toThrow(expect.objectContaining({ status: 412 }));
  });
});

describe('notModified', () => {
  it('matches If-None-Match weakly, as RFC 9110 says', () => {
    const etag = etagOf({ id: 1 });
    expect(notModified({ 'if-none-match': `W/${etag}` }, etag)).toBe(true);
    expect(notModified({ 'if-none-match': '"x"' }, etag)).toBe(false);
    expect(notModified({}, etag)).toBe(false);
  });
});
