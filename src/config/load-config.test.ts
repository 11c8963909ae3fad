import { ConfigError } from '../base/errors';
import { interpolate, parseConfig } from './load-config';

const minimal = {
  auth: { issuer: 'https://id.example.com', audience: 'portcullis', jwks_file: 'keys/jwks.json' },
  services: { organizations: { url: 'http://127.0.0.1:7001' } },
};

describe('parseConfig', () => {
  it('fills every default and resolves relative paths against the config folder', () => {
    const config = parseConfig(minimal, {}, '/etc/portcullis');
    expect(config.server).toEqual({
      host: '127.0.0.1',
      port: 8080,
      body_limit_bytes: 10485760,
      decoded_body_limit_bytes: 64 * 1024 * 1024,
      upstream_timeout_ms: 30000,
      headers_timeout_ms: 10000,
      request_timeout_ms: 60000,
      max_header_bytes: 16384,
      shutdown_grace_ms: 8000,
      trusted_proxies: [],
    });
    expect(config.services.organizations).toEqual({ url: 'http://127.0.0.1:7001', forward_authorization: false, forward_cookies: true });
    expect(config.admin.port).toBe(9090);
    expect(config.policy).toEqual({
      source: '/etc/portcullis/policies',
      entrypoint: 'portcullis/decision',
      poll_interval_s: 30,
      evaluation: 'auto',
    });
    expect(config.auth.jwks_file).toBe('/etc/portcullis/keys/jwks.json');
    expect(config.auth.algorithms).toEqual(['RS256', 'ES256', 'EdDSA']);
    expect(config.database.url).toBeUndefined();
  });

  it('rejects an unknown key and names its path', () => {
    expect(() => parseConfig({ ...minimal, server: { port: 8080, prot: 1 } }, {}, '/')).toThrow(/server: .*prot/);
  });

  it('rejects a bad value and names its path', () => {
    expect(() => parseConfig({ ...minimal, server: { port: 'eighty' } }, {}, '/')).toThrow(/server\.port: /);
    expect(() => parseConfig({ ...minimal, auth: { ...minimal.auth, algorithms: ['none'] } }, {}, '/')).toThrow(/auth\.algorithms\.0: /);
    expect(() => parseConfig({ ...minimal, policy: { evaluation: 'worker' } }, {}, '/')).toThrow(/policy\.evaluation: /);
    expect(parseConfig({ ...minimal, policy: { evaluation: 'inline' } }, {}, '/').policy.evaluation).toBe('inline');
  });

  it('requires exactly one key source', () => {
    expect(() => parseConfig({ ...minimal, auth: { ...minimal.auth, jwks_url: 'https://id.example.com/jwks' } }, {}, '/')).toThrow(
      /auth: exactly one of jwks_url, jwks_file and discovery: true is required/,
    );
    expect(() => parseConfig({ ...minimal, auth: { ...minimal.auth, discovery: true } }, {}, '/')).toThrow(
      /auth: exactly one of jwks_url, jwks_file and discovery/,
    );
    const { jwks_file: _file, ...noKeys } = minimal.auth;
    expect(() => parseConfig({ ...minimal, auth: noKeys }, {}, '/')).toThrow(/auth: exactly one of jwks_url, jwks_file and discovery/);
    expect(parseConfig({ ...minimal, auth: { ...noKeys, discovery: true } }, {}, '/').auth.discovery).toBe(true);
  });

  it('defaults the token rules: 24 h lifetime, access-token types, 5 s cooldown, 300 s cache', () => {
    expect(parseConfig(minimal, {}, '/').auth).toMatchObject({
      discovery: false,
      max_token_lifetime_s: 86_400,
      token_types: [null, 'JWT', 'at+jwt'],
      jwks_cooldown_s: 5,
      token_cache_ttl_s: 300,
    });
  });

  it('refuses plain http for keys, discovery and policies except on loopback, naming the key', () => {
    const { jwks_file: _file, ...noKeys } = minimal.auth;
    const withAuth = (auth: Record<string, unknown>) => ({ ...minimal, auth: { ...noKeys, ...auth } });
    expect(() => parseConfig(withAuth({ jwks_url: 'http://id.example.com/jwks' }), {}, '/')).toThrow(
      /auth\.jwks_url: must be an https URL \(http only on loopback\): http:\/\/id\.example\.com\/jwks/,
    );
    expect(() => parseConfig(withAuth({ issuer: 'http://id.example.com', discovery: true }), {}, '/')).toThrow(
      /auth\.issuer: must be an https URL/,
    );
    expect(() => parseConfig(withAuth({ issuer: 'portcullis-idp', discovery: true }), {}, '/')).toThrow(
      /auth\.issuer: must be an https URL/,
    );
    expect(() => parseConfig({ ...minimal, policy: { source: 'http://bundles.example.com/b.tar.gz' } }, {}, '/')).toThrow(
      /policy\.source: must be an https URL/,
    );
    expect(() => parseConfig({ ...minimal, policy: { shadow: { source: 'HTTP://bundles.example.com/b.tar.gz' } } }, {}, '/')).toThrow(
      /policy\.shadow\.source: must be an https URL/,
    );
    // A plain issuer is fine without discovery: it is only compared, never fetched.
    expect(parseConfig({ ...minimal, auth: { ...minimal.auth, issuer: 'http://id.example.com' } }, {}, '/').auth.issuer).toBe(
      'http://id.example.com',
    );
    for (const host of ['127.0.0.1', '127.9.8.7', '[::1]', 'localhost', 'LOCALHOST']) {
      expect(parseConfig(withAuth({ jwks_url: `http://${host}:8081/jwks` }), {}, '/').auth.jwks_url).toBe(`http://${host}:8081/jwks`);
      expect(parseConfig(withAuth({ issuer: `http://${host}:8081`, discovery: true }), {}, '/').auth.discovery).toBe(true);
      expect(parseConfig({ ...minimal, policy: { source: `http://${host}/b.tar.gz` } }, {}, '/').policy.source).toBe(
        `http://${host}/b.tar.gz`,
      );
    }
    for (const lookalike of ['128.0.0.1', '127.0.0.1.example.com', 'localhost.example.com', '[::2]']) {
      expect(() => parseConfig(withAuth({ jwks_url: `http://${lookalike}/jwks` }), {}, '/')).toThrow(
        /auth\.jwks_url: must be an https URL/,
      );
    }
  });

  it('accepts trusted proxies as addresses or CIDR ranges and rejects anything else, naming the entry', () => {
    const server = (trusted_proxies: string[]) => ({ ...minimal, server: { trusted_proxies } });
    expect(parseConfig(server(['127.0.0.1', '10.0.0.0/8', '2001:db8::/32', '::1']), {}, '/').server.trusted_proxies).toHaveLength(4);
    for (const bad of [
      '10.0.0.0/33',
      '2001:db8::/129',
      'lb.internal',
      '10.0.0.0/8/8',
      '10.0.0/8',
      '10.0.0.0/',
      '10.0.0.0/-1',
      ' 10.0.0.1',
    ]) {
      expect(() => parseConfig(server(['127.0.0.1', bad]), {}, '/')).toThrow(
        /server\.trusted_proxies\.1: must be an IP address or a CIDR range/,
      );
    }
  });

  it('rejects a per-service setting that is not a boolean, naming its path', () => {
    const services = { organizations: { url: 'http://127.0.0.1:7001', forward_cookies: 'no' } };
    expect(() => parseConfig({ ...minimal, services }, {}, '/')).toThrow(/services\.organizations\.forward_cookies: /);
  });

  it('rejects a route naming an unknown service', () => {
    const routes = [{ method: 'GET', path: '/reports', action: 'report:read', service: 'reports' }];
    expect(() => parseConfig({ ...minimal, routes }, {}, '/')).toThrow(/routes\.0\.service: names no service/);
  });

  it('returns a frozen configuration', () => {
    const config = parseConfig(minimal, {}, '/');
    expect(Object.isFrozen(config.server)).toBe(true);
  });
});

describe('interpolate', () => {
  it('replaces ${VAR} inside strings from the environment', () => {
    expect(interpolate({ a: 'postgres://${USER_NAME}@db/x' }, { USER_NAME: 'gw' })).toEqual({ a: 'postgres://gw@db/x' });
  });

  it('treats a value that is only an unset ${VAR} as absent', () => {
    const config = parseConfig({ ...minimal, database: { url: '${DATABASE_URL}' } }, {}, '/');
    expect(config.database.url).toBeUndefined();
  });

  it('rejects an unset variable inside a longer string, naming the key', () => {
    expect(() => interpolate({ admin: { token: 'x-${MISSING}' } }, {})).toThrow(ConfigError);
    expect(() => interpolate({ admin: { token: 'x-${MISSING}' } }, {})).toThrow(/admin\.token: environment variable MISSING/);
  });
});
