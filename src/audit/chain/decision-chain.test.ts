// The canonical form every hash is computed over: the text PostgreSQL's jsonb writes for the
// same value, whatever order or shape the value was built in.
import { createHash } from 'node:crypto';
import { canonicalJson, chainHash, GENESIS_HASH, jsonValueEnd, LEGACY_CHAIN, prepareDecision, preparedFromContent } from './decision-chain';
import type { DecisionRecord } from '../decision-record';

const record: DecisionRecord = {
  id: '6F1C2D3E-0000-4000-8000-000000000001',
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
  it('writes what jsonb::text writes: sorted keys, a space after each comma and colon', () => {
    expect(canonicalJson({ b: 1, a: { d: [3, { f: 1, e: 2 }], c: null }, e: [], o: {} })).toBe(
      '{"a": {"c": null, "d": [3, {"e": 2, "f": 1}]}, "b": 1, "e": [], "o": {}}',
    );
  });

  it('orders keys as PostgreSQL jsonb does: shorter UTF-8 first, then by bytes', () => {
    const keys = { zz: 1, aaa: 2, b: 3, '\u00e9': 4, '10': 5, '9': 6, '\uffff': 7, '\u{1f600}': 8 };
    expect(canonicalJson(keys)).toBe('{"9": 6, "b": 3, "10": 5, "zz": 1, "\u00e9": 4, "aaa": 2, "\uffff": 7, "\u{1f600}": 8}');
  });

  it('orders keys of equal UTF-8 length by their bytes, also where UTF-16 order differs (a surrogate pair against U+FFFF)', () => {
    // UTF-8 bytes: EF BF BF 61 before F0 90 80 80, though the pair's code unit D800 sorts before FFFF.
    expect(canonicalJson({ '\u{10000}': 1, '\uffffa': 2, zzzz: 3, 'é\u00e9': 4 })).toBe(
      '{"zzzz": 3, "é\u00e9": 4, "\uffffa": 2, "\u{10000}": 1}',
    );
  });

  it('serializes a frozen object once and reuses its text, exactly as if it were not frozen', () => {
    let serialized = 0;
    const subject = Object.freeze({ memberships: Object.freeze({ acme: Object.freeze({ role: 'default' }) }) });
    const counting = Object.freeze({
      toJSON() {
        serialized += 1;
        return { b: 1, a: 2 };
      },
    });
    const first = canonicalJson({ subject, counting, n: 1 });
    const second = canonicalJson({ subject, counting, n: 2 });
    expect(serialized).toBe(1);
    expect(first).toBe('{"n": 1, "subject": {"memberships": {"acme": {"role": "default"}}}, "counting": {"a": 2, "b": 1}}');
    expect(second).toBe(first.replace('"n": 1', '"n": 2'));
    expect(
      canonicalJson({ subject: structuredClone({ memberships: { acme: { role: 'default' } } }), counting: { a: 2, b: 1 }, n: 1 }),
    ).toBe(first);
  });

  it('writes keys alike however many distinct keys it has seen (its quoted-key cache is bounded)', () => {
    const keys = Array.from({ length: 3000 }, (_, i) => `k${i}`);
    const object = Object.fromEntries(keys.map((key, i) => [key, i]));
    // Every key is "k" and digits: shorter first, then by bytes.
    const sorted = [...keys].sort((a, b) => a.length - b.length || (a < b ? -1 : 1));
    const expected = `{${sorted.map((key) => `"${key}": ${object[key]}`).join(', ')}}`;
    expect(canonicalJson(object)).toBe(expected);
    expect(canonicalJson(object)).toBe(expected);
    expect(canonicalJson({ k1: { k2999: 'x' } })).toBe('{"k1": {"k2999": "x"}}');
  });

  it('writes numbers in plain decimal, as PostgreSQL’s numeric does', () => {
    expect(canonicalJson([1e21, 1.5e21, -1.5e-7, 5e-7, 1e-6, 2.5, -0, 0.1 + 0.2])).toBe(
      '[1000000000000000000000, 1500000000000000000000, -0.00000015, 0.0000005, 0.000001, 2.5, 0, 0.30000000000000004]',
    );
  });

  it('follows JSON.stringify for undefined, non-finite numbers, toJSON and nested arrays', () => {
    expect(canonicalJson({ gone: undefined, n: Number.NaN, i: Number.POSITIVE_INFINITY, d: new Date(0), list: [undefined, () => 1] })).toBe(
      '{"d": "1970-01-01T00:00:00.000Z", "i": null, "n": null, "list": [null, null]}',
    );
    expect(canonicalJson(undefined)).toBe('null');
  });

  it('replaces what PostgreSQL cannot store (NUL, lone surrogates) and is idempotent on the result', () => {
    const once = canonicalJson({ 'k\u0000': 'a\u0000b\ud800c' });
    expect(once).toBe('{"k\ufffd": "a\ufffdb\ufffdc"}');
    expect(canonicalJson(JSON.parse(once))).toBe(once);
  });

  it('keeps one member, the last written, of keys that become one once cleaned, as jsonb keeps the last duplicate', () => {
    expect(canonicalJson({ 'a\u0000': 1, 'a\ud800': 2, b: 3 })).toBe('{"b": 3, "a\ufffd": 2}');
    // A member JSON drops is not written, so it does not hide the one before it.
    expect(canonicalJson({ 'a\u0000': 1, 'a\ud800': undefined })).toBe('{"a\ufffd": 1}');
    expect(canonicalJson({ x: { '\udc00': 'first', '\ud800': 'second' } })).toBe('{"x": {"\ufffd": "second"}}');
  });

  it('hashes uuids lower-case, as PostgreSQL returns them', () => {
    expect(prepareDecision(record).id).toBe('6f1c2d3e-0000-4000-8000-000000000001');
    expect(prepareDecision(record).content).toContain('"id": "6f1c2d3e-0000-4000-8000-000000000001"');
    expect(prepareDecision(record).time).toBe('2026-11-28T12:00:00.007Z');
  });

  it('writes a column JSON cannot hold (a function, a toJSON giving undefined) as null, as PostgreSQL renders it', () => {
    const content = JSON.parse(prepareDecision({ ...record, input: () => 1, subject: undefined as unknown as null }).content) as Record<
      string,
      unknown
    >;
    expect(content).toMatchObject({ input: null, subject: null });
    expect(Object.keys(content)).toContain('input');
  });

  it('cleans a record whose text holds an escaped NUL or lone surrogate, and leaves a mere backslash-u in a value as it is', () => {
    const unstorable = prepareDecision({ ...record, path: '/orgs/a\u0000b', input: { note: 'x\ud800y' } }).content;
    expect(unstorable).toContain('"path": "/orgs/a\ufffdb"');
    expect(unstorable).toContain('"note": "x\ufffdy"');
    // A backslash followed by u0000 in the data is escaped as \\u0000: the text holds it, and stays as written.
    expect(prepareDecision({ ...record, path: '/orgs/a\\u0000' }).content).toContain('"path": "/orgs/a\\\\u0000"');
  });

  it('includes dry_run only when it is true', () => {
    expect(prepareDecision(record).content).not.toContain('dry_run');
    expect(prepareDecision({ ...record, dryRun: true }).content).toContain('"dry_run": true');
  });
});

describe('chainHash', () => {
  it('depends on the previous hash, the chain, the position and every byte of the content', () => {
    const { content } = prepareDecision(record);
    const hash = chainHash(GENESIS_HASH, 'gw-1', 1, content);
    expect(hash).toMatch(/^[0-9a-f]{64}$/);
    expect(chainHash(GENESIS_HASH, 'gw-1', 2, content)).not.toBe(hash);
    expect(chainHash(GENESIS_HASH, 'gw-2', 1, content)).not.toBe(hash);
    expect(chainHash('1'.repeat(64), 'gw-1', 1, content)).not.toBe(hash);
    expect(chainHash(GENESIS_HASH, 'gw-1', 1, content.replace('"status": 200', '"status": 201'))).not.toBe(hash);
  });

  it('hashes the legacy chain as before chains had names: over prev_hash, seq and content', () => {
    const { content } = prepareDecision(record);
    const before = createHash('sha256').update(`${GENESIS_HASH}\n7\n`).update(content).digest('hex');
    expect(chainHash(GENESIS_HASH, LEGACY_CHAIN, 7, content)).toBe(before);
    expect(chainHash(GENESIS_HASH, 'gw-1', 7, content)).not.toBe(before);
  });
});

describe('preparedFromContent', () => {
  it('reads a spool line back, and refuses one that is not a record', () => {
    const prepared = prepareDecision(record);
    expect(preparedFromContent(prepared.content)).toEqual(prepared);
    expect(() => preparedFromContent('{"id":1}')).toThrow(/not a decision record/);
  });
});

describe("a prepared record's input", () => {
  // The store sends the input apart from the rest and keeps it as this text (input_text).
  const awkward: DecisionRecord[] = [
    record,
    { ...record, input: null },
    { ...record, input: ['a', { b: [1, 2] }] },
    { ...record, input: 42 },
    { ...record, input: 'just "text", with \\ and , "input": inside' },
    { ...record, input: { action: 'x', input: { input: ', "input": ' }, 'a"b': '\\', 'c\\': ['}', ']', '{', '['] } },
    { ...record, code: 'c, "input": {"x": 1}', path: '/orgs/a, "input": null' },
    { ...record, input: { nul: 'x\u0000y', lone: '\ud800', emoji: '😀' } },
  ];

  it('is marked where its canonical text is in the content, and taking it out leaves the record with no input', () => {
    for (const each of awkward) {
      const prepared = prepareDecision(each);
      const text = prepared.content.slice(prepared.inputStart, prepared.inputEnd);
      expect(text).toBe(canonicalJson(each.input));
      expect(JSON.parse(text)).toEqual((JSON.parse(prepared.content) as { input: unknown }).input);
      expect(prepared.content.slice(0, prepared.inputStart) + 'null' + prepared.content.slice(prepared.inputEnd)).toBe(
        prepareDecision({ ...each, input: null }).content,
      );
    }
  });

  it('is found at the same place in a spool line read back', () => {
    for (const each of awkward) {
      const prepared = prepareDecision(each);
      expect(preparedFromContent(prepared.content)).toEqual(prepared);
    }
  });
});

describe('jsonValueEnd', () => {
  it('finds the end of the JSON value at a position: scalars, strings with escapes, nested containers', () => {
    const text = '{"a": null, "b": "x\\"y\\\\", "c": [1, {"d": "]}"}], "e": -1.5e3, "f": {}}';
    const end = (key: string) => {
      const start = text.indexOf(`"${key}": `) + key.length + 4;
      return text.slice(start, jsonValueEnd(text, start));
    };
    expect(['a', 'b', 'c', 'e', 'f'].map(end)).toEqual(['null', '"x\\"y\\\\"', '[1, {"d": "]}"}]', '-1.5e3', '{}']);
    expect(jsonValueEnd('true', 0)).toBe(4);
    expect(() => jsonValueEnd('"open', 0)).toThrow(/unterminated/);
  });
});
