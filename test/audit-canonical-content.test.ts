// The canonical JSON the gateway hashes, against the text PostgreSQL renders for the stored row
// (CANONICAL_CONTENT_SQL, what verification hashes): many random records, awkward strings,
// numbers and inputs of unknown shape, must give the same bytes, and so chains that verify.
import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import { GENESIS_HASH, prepareDecision } from '../src/audit/chain/decision-chain';
import { PgDecisionStore } from '../src/audit/chain/pg-decision-store';
import type { DecisionRecord } from '../src/audit/decision-record';
import { CANONICAL_CONTENT_SQL } from '../src/audit/store/pg-decision-query-store';
import { createTestDatabase, type TestDatabase } from './support/test-database';
import { mulberry32 } from './support/seeded-random';

let database: TestDatabase;
let db: Knex;

beforeAll(async () => {
  database = await createTestDatabase();
  db = database.db;
});

afterAll(async () => {
  await database.drop();
});

const SEED = Number(process.env.CANONICAL_SEED ?? 20261130);
const RECORDS = 1500;

// Pieces strings are made of: plain text, JSON escapes, control characters, NUL and lone
// surrogates (stored as U+FFFD), multi-byte and astral characters, separators JSON.stringify keeps.
const PIECES = [
  'a',
  'Zz',
  ' ',
  'org',
  '"',
  '\\',
  '/',
  '\n',
  '\t',
  '\u0001',
  '\u001f',
  '\u007f',
  '\u0000',
  '\ud800',
  '\udfff',
  'é',
  '中文',
  '😀',
  '\uffff',
  '\u2028',
  '\\u0000',
  '{"k": 1}',
];

class Generator {
  private readonly next: () => number;

  constructor(seed: number) {
    this.next = mulberry32(seed);
  }

  int(below: number): number {
    return Math.floor(this.next() * below);
  }

  chance(probability: number): boolean {
    return this.next() < probability;
  }

  pick<T>(values: readonly T[]): T {
    return values[this.int(values.length)]!;
  }

  string(maxPieces = 6): string {
    let text = '';
    for (let i = this.int(maxPieces + 1); i > 0; i--) text += this.pick(PIECES);
    return text;
  }

  number(): number {
    switch (this.int(6)) {
      case 0:
        return this.int(2000) - 1000;
      case 1:
        return (this.next() - 0.5) * 10 ** (this.int(40) - 20);
      case 2:
        return this.pick([0, -0, 1e21, 1e300, -1.5e-7, 5e-324, 2 ** 53 + 2, 0.1 + 0.2, 123456789.125]);
      case 3:
        return this.pick([Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]);
      default:
        return this.next() * 1000;
    }
  }

  /** A value of unknown shape, as a policy input or a route's params can be. */
  value(depth: number): unknown {
    const kind = this.int(depth > 0 ? 11 : 6);
    switch (kind) {
      case 0:
        return this.string();
      case 1:
        return this.number();
      case 2:
        return this.chance(0.5);
      case 3:
        return null;
      case 4:
        return BigInt(this.int(1_000_000)) * 1_000_000_000_000n;
      case 5:
        // Dropped as a member, null in an array (JSON.stringify's rules).
        return this.pick([undefined, () => 1]);
      case 6:
      case 7: {
        const items: unknown[] = [];
        for (let i = this.int(5); i > 0; i--) items.push(this.value(depth - 1));
        return items;
      }
      case 8:
        return { toJSON: () => this.value(depth - 1) };
      case 9:
        return Object.freeze(this.object(depth - 1));
      default:
        return this.object(depth - 1);
    }
  }

  object(depth: number): Record<string, unknown> {
    const object: Record<string, unknown> = {};
    for (let i = this.int(7); i > 0; i--) {
      const key = this.string(3);
      object[key] = this.value(depth);
      // Now and then two keys PostgreSQL would store alike (NUL and a lone surrogate both
      // become U+FFFD): jsonb holds one member for both.
      if (this.chance(0.15)) {
        object[`${key}\u0000`] = this.value(depth);
        object[`${key}${this.pick(['\ud800', '\udfff'])}`] = this.value(depth);
      }
    }
    return object;
  }

  uuid(): string {
    const id = randomUUID();
    return this.chance(0.3) ? id.toUpperCase() : id;
  }

  nullable<T>(make: () => T): T | null {
    return this.chance(0.2) ? null : make();
  }

  record(n: number): DecisionRecord {
    const record: DecisionRecord = {
      id: this.uuid(),
      time: new Date(Date.UTC(2026, 10, 1) + this.int(60 * 24 * 3600 * 1000)),
      requestId: this.string() || `request-${n}`,
      subject: this.nullable(() => this.string()),
      userId: this.nullable(() => this.uuid()),
      organization: this.nullable(() => this.string()),
      action: this.string(),
      resource: this.chance(0.5) ? { org: this.string(), type: this.string(), project: this.string() } : this.object(2),
      method: this.pick(['GET', 'POST', 'DELETE', '']),
      path: this.string(),
      allow: this.chance(0.5),
      status: this.int(600),
      reasons: Array.from({ length: this.int(4) }, () => this.string()),
      policyRevision: this.nullable(() => this.string()),
      evalLatencyUs: this.nullable(() => this.int(1_000_000)),
      input: this.chance(0.1) ? this.pick([null, undefined]) : this.value(4),
    };
    if (this.chance(0.5)) record.code = this.chance(0.2) ? null : this.string();
    if (this.chance(0.4)) record.codeParams = this.chance(0.2) ? null : this.object(2);
    if (this.chance(0.5)) record.dryRun = this.chance(0.5);
    if (this.chance(0.5)) record.directoryVersion = this.chance(0.2) ? null : this.int(2 ** 31);
    return record;
  }
}

describe('canonical content (property test against PostgreSQL)', () => {
  it(`writes for ${RECORDS} random records exactly the text PostgreSQL renders for their stored rows (seed ${SEED})`, async () => {
    const random = new Generator(SEED);
    const records = Array.from({ length: RECORDS }, (_, n) => random.record(n));
    const prepared = records.map(prepareDecision);
    const store = new PgDecisionStore(db, 'property');
    for (let start = 0; start < prepared.length; start += 500) await store.append(prepared.slice(start, start + 500));

    const { rows } = await db.raw<{ rows: { id: string; content: string; prev_hash: string; hash: string; sound: boolean }[] }>(
      `select id, prev_hash, hash, ${CANONICAL_CONTENT_SQL} as content,
              hash = encode(sha256(convert_to(prev_hash || E'\\n' || chain || E'\\n' || chain_seq || E'\\n' || ${CANONICAL_CONTENT_SQL}, 'UTF8')), 'hex') as sound
         from decisions where chain = 'property' order by chain_seq`,
    );
    expect(rows).toHaveLength(RECORDS);
    const mismatches = rows.flatMap((row, i) =>
      row.content === prepared[i]!.content ? [] : [{ i, gateway: prepared[i]!.content, postgres: row.content }],
    );
    expect(mismatches.slice(0, 3)).toEqual([]);
    expect(rows.filter((row) => !row.sound)).toEqual([]);
    expect(rows[0]!.prev_hash).toBe(GENESIS_HASH);
  });
});
