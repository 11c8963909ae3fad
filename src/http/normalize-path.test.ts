import { mulberry32 } from '../../test/support/seeded-random';
import { InputError } from '../base/errors';
import { canonicalizeTarget, decodeSegment, MAX_PATH_LENGTH, MAX_PATH_SEGMENTS } from './normalize-path';

const path = (url: string) => canonicalizeTarget(url).path;

function rejection(url: string): InputError {
  try {
    canonicalizeTarget(url);
  } catch (error) {
    expect(error).toBeInstanceOf(InputError);
    expect((error as InputError).status).toBe(400);
    return error as InputError;
  }
  throw new Error(`expected ${JSON.stringify(url)} to be rejected`);
}

describe('canonicalizeTarget', () => {
  describe('canonical form', () => {
    it('keeps an already canonical path and splits off the query untouched', () => {
      expect(canonicalizeTarget('/orgs/acme/projects?limit=10&x=%2F..%2e')).toEqual({
        path: '/orgs/acme/projects',
        query: '?limit=10&x=%2F..%2e',
      });
      expect(canonicalizeTarget('/orgs/acme')).toEqual({ path: '/orgs/acme', query: '' });
      expect(canonicalizeTarget('/orgs?')).toEqual({ path: '/orgs', query: '?' });
    });

    it('collapses repeated slashes and removes a trailing slash', () => {
      expect(path('//orgs///acme//')).toBe('/orgs/acme');
      expect(path('/orgs/acme/')).toBe('/orgs/acme');
      expect(path('/')).toBe('/');
      expect(path('//')).toBe('/');
      expect(canonicalizeTarget('/orgs/?a=1')).toEqual({ path: '/orgs', query: '?a=1' });
    });

    it('keeps the letter case of the path and of the query', () => {
      expect(canonicalizeTarget('/ORGS/Acme/credentials/Key_AbC?Q=X')).toEqual({ path: '/ORGS/Acme/credentials/Key_AbC', query: '?Q=X' });
    });

    it('decodes percent-encoded unreserved characters, keeping their case', () => {
      expect(path('/orgs/%41%63me')).toBe('/orgs/Acme');
      expect(path('/a%2Db%5Fc%7Ed%2ee')).toBe('/a-b_c~d.e');
    });

    it('keeps other escapes encoded, with upper-case hex', () => {
      expect(path('/users/%c3%a9t%C3%A9')).toBe('/users/%C3%A9t%C3%A9');
      expect(path('/a%20b/%3f%23%40')).toBe('/a%20b/%3F%23%40');
    });

    it('accepts sub-delimiters, colons and at-signs raw', () => {
      expect(path("/a!$&'()*+,=:@b")).toBe("/a!$&'()*+,=:@b");
    });

    it('accepts segments that merely contain dots', () => {
      expect(path('/a/.../.b/c./v1.2')).toBe('/a/.../.b/c./v1.2');
    });
  });

  describe('request-target form', () => {
    it.each(['http://gateway/orgs', 'HTTPS://x/y', 'gateway:443', '*', '', 'orgs/acme', '?x=1'])(
      'rejects %j, which is not origin-form',
      (url) => {
        expect(rejection(url).message).toMatch(/starting with "\/"/);
      },
    );

    it('rejects a fragment in the path or the query', () => {
      expect(rejection('/orgs#x').message).toMatch(/fragment/);
      expect(rejection('/orgs?a=1#x').message).toMatch(/fragment/);
    });
  });

  describe('raw characters', () => {
    it.each([
      ['/orgs\u0000/x', /control character/],
      ['/orgs\t', /control character/],
      ['/orgs\u007f', /control character/],
      ['/or gs', /space/],
      ['/orgs\\acme', /backslash/],
      ['/orgs/acme;jsessionid=1', /semicolon/],
      ['/orgs/..;/admin', /semicolon/],
      ['/orgs/\u00e9', /non-ASCII/],
      ['/orgs/\u2028', /non-ASCII/],
      ['/orgs/<x>', /must be percent-encoded/],
      ['/orgs/"x"', /must be percent-encoded/],
      ['/orgs/{org}', /must be percent-encoded/],
    ])('rejects %j', (url, message) => {
      expect(rejection(url).message).toMatch(message);
    });

    it('rejects a control character in the query but passes anything else through', () => {
      expect(rejection('/orgs?a=\u0000').message).toMatch(/query string/);
      expect(rejection('/orgs?a=\r\nx: y').message).toMatch(/query string/);
      expect(canonicalizeTarget('/orgs?a=..;\\%zz').query).toBe('?a=..;\\%zz');
    });
  });

  describe('percent-encoding', () => {
    it.each(['/orgs/%', '/orgs/%2', '/orgs/%zz', '/orgs/%g1', '/orgs/%%41', '/orgs/%2/x'])('rejects the malformed escape in %j', (url) => {
      expect(rejection(url).message).toMatch(/two hex digits/);
    });

    it.each([
      ['/orgs/a%2fb', /encoded slash/],
      ['/orgs/a%2Fb', /encoded slash/],
      ['/orgs/a%5cb', /encoded backslash/],
      ['/orgs/a%5Cb', /encoded backslash/],
      ['/orgs/a%00', /encoded NUL/],
      ['/orgs/..%3b/x', /encoded semicolon/],
      ['/orgs/%252e%252e/x', /double encoding/],
      ['/orgs/%25', /double encoding/],
      ['/orgs/a%0d%0ax', /encoded control character/],
      ['/orgs/a%7F', /encoded control character/],
    ])('rejects %j', (url, message) => {
      expect(rejection(url).message).toMatch(message);
    });
  });

  describe('UTF-8 in escapes', () => {
    it('accepts escapes spelling valid UTF-8, up to U+10FFFF', () => {
      expect(path('/teams/caf%c3%a9/%E2%82%AC/%F0%9F%98%80/%F4%8F%BF%BF/%ED%9F%BF/%EE%80%80')).toBe(
        '/teams/caf%C3%A9/%E2%82%AC/%F0%9F%98%80/%F4%8F%BF%BF/%ED%9F%BF/%EE%80%80',
      );
    });

    it.each([
      ['/orgs/%C0%AF', /overlong/],
      ['/orgs/%C0%AE%C0%AE/admin', /overlong/],
      ['/orgs/%C1%81', /overlong/],
      ['/orgs/%E0%80%AF', /overlong/],
      ['/orgs/%F0%80%80%AF', /overlong/],
      ['/orgs/%80', /continuation byte without a lead byte/],
      ['/orgs/a%BFb', /continuation byte without a lead byte/],
      ['/orgs/%C3%A9%A9', /continuation byte without a lead byte/],
      ['/orgs/%C3', /truncated/],
      ['/orgs/%E2%82', /truncated/],
      ['/orgs/%E2%82/x', /truncated/],
      ['/orgs/%C3a', /truncated/],
      ['/orgs/%C3%41', /truncated/],
      ['/orgs/%C3%C3%A9', /truncated/],
      ['/orgs/%ED%A0%80', /surrogate/],
      ['/orgs/%ED%BF%BF', /surrogate/],
      ['/orgs/%F4%90%80%80', /above U\+10FFFF/],
      ['/orgs/%F5%80%80%80', /0xF5/],
      ['/orgs/%FF', /0xFF/],
    ])('rejects %j', (url, message) => {
      const error = rejection(url);
      expect(error.message).toMatch(/not valid UTF-8/);
      expect(error.message).toMatch(message);
    });
  });

  describe('decodeSegment', () => {
    it('decodes every escape of a canonical segment and leaves other text alone', () => {
      expect(decodeSegment('core%20team')).toBe('core team');
      expect(decodeSegment('caf%C3%A9')).toBe('café');
      expect(decodeSegment('Builders')).toBe('Builders');
      expect(decodeSegment("a+b!$&'()*,=:@")).toBe("a+b!$&'()*,=:@");
    });
  });

  describe('dot segments', () => {
    it.each([
      '/orgs/../admin',
      '/orgs/./acme',
      '/..',
      '/.',
      '/orgs/acme/..',
      '/orgs/%2e%2e/admin',
      '/orgs/.%2E/admin',
      '/orgs/%2E/acme',
      '//..//x',
      '/orgs/acme/.?x=1',
    ])('rejects %j instead of resolving it', (url) => {
      expect(rejection(url).message).toMatch(/"\." or "\.\." segment/);
    });
  });

  describe('limits', () => {
    it(`accepts a path of ${MAX_PATH_LENGTH} characters and rejects a longer one`, () => {
      const longest = '/' + 'a'.repeat(MAX_PATH_LENGTH - 1);
      expect(path(longest)).toBe(longest);
      expect(rejection(longest + 'a').message).toMatch(/longer than/);
    });

    it(`accepts ${MAX_PATH_SEGMENTS} segments and rejects more`, () => {
      expect(path('/a'.repeat(MAX_PATH_SEGMENTS))).toBe('/a'.repeat(MAX_PATH_SEGMENTS));
      expect(rejection('/a'.repeat(MAX_PATH_SEGMENTS + 1)).message).toMatch(/more than 64 segments/);
    });

    it('does not count collapsed empty segments', () => {
      expect(path('/a' + '/'.repeat(200))).toBe('/a');
    });
  });

  describe('property: every accepted path is canonical and means what the client sent', () => {
    const TOKENS = [
      '/',
      '/',
      '/',
      '.',
      '..',
      '%',
      '2',
      'e',
      'E',
      'f',
      'F',
      '5',
      'c',
      'C',
      'a',
      'A',
      'Z',
      'z',
      '0',
      '-',
      '_',
      '~',
      ';',
      '\\',
      ' ',
      '!',
      '@',
      ':',
      '*',
      '?',
      '#',
      '\u0000',
      '\u00e9',
      '%2e',
      '%2E',
      '%2f',
      '%2F',
      '%252e',
      '%5c',
      '%5C',
      '%41',
      '%61',
      '%c3',
      '%C3',
      '%a9',
      '%3b',
      '%00',
      '%0a',
      '%7e',
      '%20',
      '%25',
      '%zz',
      '%2',
      '..;',
      './',
      '%C3%A9',
      '%c0%af',
      '%80',
      '%E0%80%AF',
      '%ED%A0%80',
      '%F4%8F%BF%BF',
      '%F4%90',
      '%e2%82%ac',
      '%bf',
    ];
    const CANONICAL = /^\/(?:(?:[A-Za-z0-9\-._~!$&'()*+,=:@]|%[0-9A-F]{2})+(?:\/(?:[A-Za-z0-9\-._~!$&'()*+,=:@]|%[0-9A-F]{2})+)*)?$/;

    /** Byte-wise percent-decoding of one segment; letter case is meaning. */
    function meaning(segment: string): string {
      return segment.replace(/%([0-9a-fA-F]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
    }
    const segmentsOf = (p: string) => p.split('/').filter((s) => s !== '');

    it('holds for 30,000 random targets', () => {
      const random = mulberry32(0x9e3779b9);
      let accepted = 0;
      let rejected = 0;
      for (let n = 0; n < 30_000; n++) {
        let url = '/';
        const length = 1 + Math.floor(random() * 12);
        for (let k = 0; k < length; k++) url += TOKENS[Math.floor(random() * TOKENS.length)];

        let result: { path: string; query: string };
        try {
          result = canonicalizeTarget(url);
        } catch (error) {
          if (!(error instanceof InputError)) throw error;
          rejected++;
          continue;
        }
        accepted++;
        const canonical = result.path;
        const context = `for ${JSON.stringify(url)} -> ${JSON.stringify(canonical)}`;
        const fail = (what: string) => {
          throw new Error(`${what} ${context}`);
        };

        if (canonicalizeTarget(canonical).path !== canonical) fail('not a fixed point');
        if (!CANONICAL.test(canonical)) fail('not in canonical alphabet');
        if (canonical.includes('//')) fail('contains //');
        if (/[\\;]/.test(canonical) || /%(2F|5C|25|3B|00)/i.test(canonical)) fail('contains a forbidden character');
        if (segmentsOf(canonical).some((s) => s === '.' || s === '..')) fail('contains a dot segment');
        if (/%(2[DE]|5F|7E|[46][1-9A-F]|[57][0-9A]|3[0-9])/.test(canonical)) fail('keeps an unreserved character encoded');
        // Strict UTF-8 decoding (decodeURIComponent throws on overlong forms and surrogates) succeeds.
        try {
          segmentsOf(canonical).forEach(decodeSegment);
        } catch {
          fail('holds escapes that are not valid UTF-8');
        }
        if (canonical !== '/' && canonical.endsWith('/')) fail('ends with a slash');
        // A WHATWG URL parser (what most upstream frameworks use) reads the same path.
        if (new URL(canonical, 'http://upstream.invalid').pathname !== canonical) fail('is read differently by WHATWG URL');
        // Nothing changed but escapes of unreserved characters and empty segments.
        const rawPath = url.split('?')[0] ?? '';
        if (segmentsOf(canonical).map(meaning).join('/') !== segmentsOf(rawPath).map(meaning).join('/')) fail('changes the meaning');
        if (result.query !== url.slice(rawPath.length)) fail('rewrites the query');
      }
      // The generator must exercise both outcomes, or the property proves nothing.
      expect(accepted).toBeGreaterThan(3_000);
      expect(rejected).toBeGreaterThan(3_000);
    });
  });
});
