// The `audit` section of portcullis.yaml: defaults, relative paths, and errors naming the key.
import { parseConfig } from '../config/load-config';

const minimal = { auth: { issuer: 'https://id.example.com', audience: 'portcullis', jwks_file: 'jwks.json' }, services: {} };

describe('audit configuration', () => {
  it('records asynchronously, keeps a year, masks cookies and authorization headers, limits 401s, checkpoints every minute, and exports nothing by default', () => {
    expect(parseConfig(minimal, {}, '/etc/portcullis').audit).toEqual({
      mode: 'async',
      spool: 'local',
      retention_days: 365,
      unauthenticated_per_minute: 600,
      checkpoint_interval_s: 60,
      mask: ['/request/headers/authorization', '/request/headers/cookie'],
    });
  });

  it('resolves the spool folder, the checkpoint key and an export file against the config folder', () => {
    const config = parseConfig(
      {
        ...minimal,
        audit: { spool_dir: 'spool', checkpoint_key_file: 'keys/checkpoint.pem', export: { kind: 'file', path: 'logs/decisions.ndjson' } },
      },
      {},
      '/etc/portcullis',
    );
    expect(config.audit.spool_dir).toBe('/etc/portcullis/spool');
    expect(config.audit.checkpoint_key_file).toBe('/etc/portcullis/keys/checkpoint.pem');
    expect(config.audit.export).toEqual({
      kind: 'file',
      path: '/etc/portcullis/logs/decisions.ndjson',
      batch_size: 500,
      flush_interval_ms: 1000,
      buffer_size: 10000,
      labels: {},
    });
  });

  it('takes an instance id that names the chain', () => {
    expect(parseConfig({ ...minimal, audit: { instance_id: 'gw-eu.1_a' } }, {}, '/').audit.instance_id).toBe('gw-eu.1_a');
  });

  it('fills an HTTP export’s defaults', () => {
    const config = parseConfig(
      { ...minimal, audit: { mode: 'strict', export: { kind: 'http', url: 'https://logs.example.com/logs' } } },
      {},
      '/',
    );
    expect(config.audit.mode).toBe('strict');
    expect(config.audit.export).toMatchObject({ kind: 'http', url: 'https://logs.example.com/logs', headers: {}, timeout_ms: 5000 });
  });

  it.each([
    [{ mode: 'sometimes' }, /audit\.mode: /],
    [{ spool: 'tmpfs' }, /audit\.spool: /],
    [{ spool: 'none', spool_dir: '/var/spool/portcullis' }, /audit\.spool_dir: is set, but audit\.spool is "none"/],
    [{ retention_days: 0 }, /audit\.retention_days: /],
    [{ unauthenticated_per_minute: -1 }, /audit\.unauthenticated_per_minute: /],
    [{ checkpoint_interval_s: 0 }, /audit\.checkpoint_interval_s: /],
    [{ checkpoint_key_file: '' }, /audit\.checkpoint_key_file: /],
    [{ mask: ['request/headers/cookie'] }, /audit\.mask\.0: must be a JSON pointer/],
    [{ export: { kind: 'http', url: 'ftp://logs' } }, /audit\.export\.url: must be an http\(s\) URL/],
    [{ export: { kind: 'kafka' } }, /audit\.export\.kind: /],
    [{ export: { kind: 'stdout', colour: 'blue' } }, /audit\.export: .*colour/],
    [{ instance_id: 'gw one' }, /audit\.instance_id: must be 1 to 63 letters, digits/],
    [{ instance_id: '-gw' }, /audit\.instance_id: must be 1 to 63 letters, digits/],
    [{ instance_id: 'x'.repeat(64) }, /audit\.instance_id: must be 1 to 63/],
    [{ instance_id: 'legacy' }, /audit\.instance_id: is reserved for the records written before instances had chains/],
  ])('refuses %j naming the key', (audit, message) => {
    expect(() => parseConfig({ ...minimal, audit }, {}, '/')).toThrow(message);
  });
});
