// Hostile input on `GET /admin/v1/decisions`: every query parameter is checked before
// PostgreSQL sees it, so a value it would refuse is a 400 problem+json naming the parameter,
// never a 500 or 503. Known bad values first, then a seeded generator of random ones.
import { expect } from '@jest/globals';
import { appendDecisions } from './support/audit-helpers';
import { startHarness, type Harness } from './support/gateway-harness';
import { mulberry32 } from './support/seeded-random';

const ADMIN_TOKEN = 'test-admin-token-0123456789';
const PARAMETERS = ['subject', 'org', 'action', 'allow', 'since', 'until', 'limit', 'cursor'] as const;

let h: Harness;
let cursor: string;

beforeAll(async () => {
  h = await startHarness();
  await appendDecisions(h.database.db, 60);
  cursor = ((await (await get('?limit=5')).json()) as { next_cursor: string }).next_cursor;
});
afterAll(async () => h?.close());

/** `query` is sent as written: already percent-encoded, or deliberately not. */
const get = (query: string) =>
  fetch(`${h.gateway.adminUrl}/admin/v1/decisions${query}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
const encoded = (params: [string, string][]) => `?${new URLSearchParams(params).toString()}`;

async function expectRefused(query: string, name: string): Promise<void> {
  const res = await get(query);
  const body = (await res.json()) as { status: number; detail: string };
  expect({ query, status: res.status, type: res.headers.get('content-type'), names: body.detail.startsWith(`${name}: `) }).toEqual({
    query,
    status: 400,
    type: expect.stringMatching(/^application\/problem\+json/),
    names: true,
  });
  expect(body.status).toBe(400);
}

describe('GET /admin/v1/decisions refuses bad values with 400 naming the parameter', () => {
  it.each(
    (
      [
        ['since', '99999-01-01'],
        ['since', '-5h'],
        ['since', '1e309d'],
        ['since', '99999999999999999999d'],
        ['since', '9999999999999w'],
        ['until', '0000-12-31'],
        ['until', '9999-12-31T23:00:00-01:00'],
        ['since', '2026-02-30'],
        ['since', '2026-11-30T24:00'],
        ['since', '2026-11-30T10:00:00+25:00'],
        ['since', ''],
        ['since', '2026-11-30\u0000'],
        ['limit', '0'],
        ['limit', '1001'],
        ['limit', '-1'],
        ['limit', '1.5'],
        ['limit', '1e2'],
        ['limit', '0x10'],
        ['limit', ''],
        ['limit', '99999999999999999999999'],
        ['allow', 'yes'],
        ['allow', 'TRUE'],
        ['allow', ''],
        ['subject', 'alice\u0000|sub'],
        ['org', '\u0000'],
        ['action', 'project:read\u0000'],
        ['cursor', ''],
        ['cursor', 'bm9wZQ'],
        ['cursor', '!!!'],
        ['cursor', 'x'.repeat(5000)],
        ['cursor', Buffer.from('[1,2]').toString('base64url')],
        [
          'cursor',
          Buffer.from('{"seq":1e309,"since":null,"until":null,"filters":"00000000000000000000000000000000"}').toString('base64url'),
        ],
        [
          'cursor',
          Buffer.from('{"seq":5,"since":"+275760-09-13T00:00:00.000Z","until":null,"filters":"00000000000000000000000000000000"}').toString(
            'base64url',
          ),
        ],
        ['cursor', Buffer.from('{"seq":5,"since":null,"until":null,"filters":"00000000000000000000000000000000"}').toString('base64url')],
      ] as [string, string][]
    ).map(([name, value]) => [name, value.length > 80 ? `${value.slice(0, 20)}… (${value.length} characters)` : value, value]),
  )('%s=%j', async (name, _shown, value) => {
    await expectRefused(encoded([[name, value]]), name);
  });

  it('refuses an unknown or repeated parameter', async () => {
    const unknown = await get('?colour=blue');
    expect(unknown.status).toBe(400);
    expect(((await unknown.json()) as { detail: string }).detail).toMatch(/^unknown parameter "colour"/);
    const repeated = await get('?org=a&org=b');
    expect(repeated.status).toBe(400);
    expect(((await repeated.json()) as { detail: string }).detail).toBe('parameter "org" is given more than once');
  });

  it('answers 400 problem+json for a decision id that is not valid percent-encoding', async () => {
    const res = await fetch(`${h.gateway.adminUrl}/admin/v1/decisions/%E0%A4%A`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  });

  it('accepts the edges of what is valid', async () => {
    for (const query of [
      '?limit=1',
      '?limit=1000',
      '?since=0001-01-01',
      '?until=9999-12-31T23:59:59.999Z',
      '?since=2026-11-30T10:00',
      '?since=0s',
      `?cursor=${cursor}`,
      '?subject=',
      "?subject=' or 1=1 --",
    ]) {
      expect({ query, status: (await get(query)).status }).toEqual({ query, status: 200 });
    }
  });
});

describe('GET /admin/v1/decisions under random input', () => {
  const SQLISH = [
    "' or '1'='1",
    "'; drop table decisions; --",
    '$1',
    '\\x00',
    '%',
    '_',
    '"',
    "E'\\\\'",
    ')::text',
    'null',
    'NaN',
    'Infinity',
    '-0',
  ];
  const CHARS = [
    'a',
    'Z',
    '0',
    '9',
    '-',
    ':',
    'T',
    'Z',
    '.',
    '+',
    ' ',
    '\u0000',
    '\u0001',
    '\t',
    '\n',
    'é',
    'ß',
    '中',
    '😀',
    '\u202e',
    '\u0301',
    '\uffff',
    '\ud800',
    '=',
    '&',
    '#',
    '/',
    '\\',
    "'",
    '"',
  ];

  const VALID: Record<(typeof PARAMETERS)[number], () => string[]> = {
    subject: () => ['alice|sub', 'bob|sub', 'nobody'],
    org: () => ['acme', 'globex', 'ACME'],
    action: () => ['project:read', 'project:delete', '*'],
    allow: () => ['true', 'false'],
    since: () => ['24h', '0s', '2026-11-28', '2026-11-28T12:00:30', '2026-11-28 12:00:30.5+01:00', '3w'],
    until: () => ['1s', '2026-11-28T12:00:45Z', '9999-12-31', '2026-11-28T12:00:00-0530'],
    limit: () => ['1', '7', '1000'],
    cursor: () => [cursor],
  };

  function randomValue(name: (typeof PARAMETERS)[number], next: () => number): string {
    const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)]!;
    const digits = (max: number) => Array.from({ length: 1 + Math.floor(next() * max) }, () => Math.floor(next() * 10)).join('');
    if (next() < 0.45) return pick(VALID[name]());
    switch (Math.floor(next() * 9)) {
      case 0:
        return Array.from({ length: Math.floor(next() * 40) }, () => pick(CHARS)).join('');
      case 1:
        return pick(SQLISH) + (next() < 0.5 ? pick(CHARS) : '');
      case 2:
        return pick(['', '-', '+']) + digits(400) + pick(['', 'e309', 'e-400', '.5', 'n']);
      case 3:
        return `${digits(30)}${pick(['', ' ', '  '])}${pick(['s', 'm', 'h', 'd', 'w', 'y', 'ms', ''])}`;
      case 4: {
        const year = pick([digits(4).padStart(4, '0'), digits(6), '0000', '9999', '-0001']);
        return `${year}-${digits(2)}-${digits(2)}${pick(['', `T${digits(2)}:${digits(2)}`, `T${digits(2)}:${digits(2)}:${digits(2)}.${digits(9)}`, ' 10:00'])}${pick(['', 'Z', `+${digits(2)}:${digits(2)}`, `-${digits(4)}`])}`;
      }
      case 5:
        return pick(['true', 'false', 'TRUE', 'yes', '1', '0', '']);
      case 6:
        return Buffer.from(
          JSON.stringify({
            seq: pick([1, -1, 2 ** 63, 1e308, 0.5, '5']),
            since: pick([null, '2026-11-30T00:00:00.000Z', '+275760-09-13T00:00:00.000Z', 5]),
            until: null,
            filters: pick(['0'.repeat(32), 'x', '']),
          }),
        ).toString('base64url');
      case 7:
        // A real cursor, tampered with.
        return cursor.slice(0, Math.floor(next() * cursor.length)) + pick(CHARS) + cursor.slice(Math.floor(next() * cursor.length));
      default:
        return Buffer.from(Array.from({ length: Math.floor(next() * 64) }, () => Math.floor(next() * 256))).toString(
          pick(['base64url', 'latin1', 'hex']),
        );
    }
  }

  it('answers 200 or a 400 problem+json naming the parameter, and nothing else, for 600 random queries', async () => {
    const seed = Number(process.env.PROPERTY_SEED ?? 20261130);
    const next = mulberry32(seed);
    const unexpected: string[] = [];
    const answered = { 200: 0, 400: 0 };
    for (let round = 0; round < 600; round++) {
      const names = PARAMETERS.filter(() => next() < 0.35);
      if (names.length === 0) names.push(PARAMETERS[Math.floor(next() * PARAMETERS.length)]!);
      const params = names.map((name): [string, string] => [name, randomValue(name, next)]);
      // Now and then the raw query string is sent as is: stray `%`, invalid UTF-8 escapes.
      const query =
        next() < 0.15
          ? `?${params.map(([name, value]) => `${name}=${value.replace(/[^\x21-\x7e]/g, '%C0%AF').replace(/[#&]/g, '%FF')}`).join('&')}`
          : encoded(params);
      const res = await get(query);
      const text = await res.text();
      const refusedByName =
        res.status === 400 &&
        /^application\/problem\+json/.test(res.headers.get('content-type') ?? '') &&
        names.some((name) => (JSON.parse(text) as { detail: string }).detail.startsWith(`${name}: `));
      if (res.status !== 200 && !refusedByName) unexpected.push(`${res.status} ${query} -> ${text.slice(0, 200)}`);
      else answered[res.status] += 1;
    }
    expect({ seed, unexpected }).toEqual({ seed, unexpected: [] });
    // Both paths were exercised: random values that reach PostgreSQL, and refusals.
    expect(answered[200]).toBeGreaterThan(100);
    expect(answered[400]).toBeGreaterThan(100);
  });
});
