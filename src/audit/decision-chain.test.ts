// The canonical form every hash is computed over: the same text for the same content, however
// it was built or read back.
import { canonicalJson, chainHash, contentOfRow, GENESIS_HASH, prepareDecision, preparedFromContent } from './decision-chain';
import type { DecisionRecord } from './decision-record';

const record: DecisionRecord = {
  id: '6f1c2d3e-0000-4000-8000-000000000001',
  time: new Date(Date.UTC(2026, 10, 28, 12, 0, 0, 7)),
  requestId: 'r-1',
  subject: 'alice|sub',
  userId: null,
  organization: 'acme',
  action: 'organization:read',
  resource: { type: 'organization', org: 'acme' },
  method: 'GET',
  path: '/orgs/acme',
  allow: true,
  status: 200,
  reasons: ['granted'],
  policyRevision: 'rev',
  evalLatencyUs: 5,
  input: { b: 1, a: { d: [3, { f: 1, e: 2 }], c: null } },
};

describe('canonicalJson', () => {
  it('sorts keys at every level and writes no whitespace', () => {
    expect(canonicalJson({ b: 1, a: { d: [3, { f: 1, e: 2 }], c: null } })).toBe('{"a":{"c":null,"d":[3,{"e":2,"f":1}]},"b":1}');
  });

  it('follows JSON.stringify for undefined, non-finite numbers, toJSON and nested arrays', () => {
    expect(canonicalJson({ gone: undefined, n: Number.NaN, i: Number.POSITIVE_INFINITY, d: new Date(0), list: [undefined, () => 1] })).toBe(
      '{"d":"1970-01-01T00:00:00.000Z","i":null,"list":[null,null],"n":null}',
    );
    expect(canonicalJson(undefined)).toBe('null');
  });

  it('replaces what PostgreSQL cannot store (NUL, lone surrogates) and is idempotent on the result', () => {
    const once = canonicalJson({ 'k\u0000': 'a\u0000b\ud800c' });
    expect(once).toBe('{"k\ufffd":"a\ufffdb\ufffdc"}');
    expect(canonicalJson(JSON.parse(once))).toBe(once);
  });

  it('gives the same text for a record and for the row PostgreSQL returns for it', () => {
    const prepared = prepareDecision(record);
    const row = {
      id: record.id,
      time: new Date(record.time),
      request_id: 'r-1',
      subject: 'alice|sub',
      user_id: null,
      organization: 'acme',
      action: 'organization:read',
      // jsonb comes back with its own key order
      resource: { org: 'acme', type: 'organization' },
      method: 'GET',
      path: '/orgs/acme',
      allow: true,
      status: 200,
      reasons: ['granted'],
      policy_revision: 'rev',
      eval_latency_us: 5,
      input: { a: { c: null, d: [3, { e: 2, f: 1 }] }, b: 1 },
      dry_run: false,
    };
    expect(canonicalJson(contentOfRow(row))).toBe(prepared.content);
    expect(prepared.time).toBe('2026-11-28T12:00:00.007Z');
  });

  it('includes dry_run only when it is true', () => {
    expect(prepareDecision(record).content).not.toContain('dry_run');
    expect(prepareDecision({ ...record, dryRun: true }).content).toContain('"dry_run":true');
  });
});

describe('chainHash', () => {
  it('depends on the previous hash, the position and every byte of the content', () => {
    const { content } = prepareDecision(record);
    const hash = chainHash(GENESIS_HASH, 1, content);
    expect(hash).toMatch(/^[0-9a-f]{64}$/);
    expect(chainHash(GENESIS_HASH, 2, content)).not.toBe(hash);
    expect(chainHash('1'.repeat(64), 1, content)).not.toBe(hash);
    expect(chainHash(GENESIS_HASH, 1, content.replace('"status":200', '"status":201'))).not.toBe(hash);
  });
});

describe('preparedFromContent', () => {
  it('reads a spool line back, and refuses one that is not a record', () => {
    const prepared = prepareDecision(record);
    expect(preparedFromContent(prepared.content)).toEqual(prepared);
    expect(() => preparedFromContent('{"id":1}')).toThrow(/not a decision record/);
  });
});
