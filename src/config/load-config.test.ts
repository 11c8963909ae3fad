import { ConfigError } from '../http/errors';
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
      upstream_timeout_ms: 30000,
      headers_timeout_ms: 10000,
      request_timeout_ms: 60000,
      max_header_bytes: 16384,
    });
    expect(config.admin.port).toBe(9090);
    expect(config.policy).toEqual({ source: '/etc/portcullis/policies', entrypoint: 'portcullis/decision', poll_interval_s: 30 });
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
  });

  it('requires exactly one key source', () => {
    expect(() => parseConfig({ ...minimal, auth: { ...minimal.auth, jwks_url: 'https://id.example.com/jwks' } }, {}, '/')).toThrow(
      /auth: exactly one of jwks_url and jwks_file/,
    );
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
