// The decision log against a real PostgreSQL: PgDecisionStore's rows, and the batching
// recorder writing through it off the request path, in order, through an outage.
import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import { DependencyError } from '../http/errors';
import { createTestDatabase, type TestDatabase } from '../../test/support/test-database';
import { BatchingDecisionRecorder } from './batching-decision-recorder';
import type { DecisionRecord } from './decision-record';
import { PgDecisionStore } from './pg-decision-store';

let database: TestDatabase;
let db: Knex;
let store: PgDecisionStore;

beforeAll(async () => {
  database = await createTestDatabase();
  db = database.db;
  store = new PgDecisionStore(db);
});

afterAll(async () => {
  await database.drop();
});

beforeEach(async () => {
  await db('decisions').truncate();
});

function decision(n: number, overrides: Partial<DecisionRecord> = {}): DecisionRecord {
  return {
    id: randomUUID(),
    time: new Date(Date.UTC(2026, 10, 28, 12, 0, 0, n % 1000)),
    requestId: `request-${n}`,
    subject: 'alice',
    userId: randomUUID(),
    organization: 'acme',
    action: 'organization:delete',
    resource: { type: 'organization', org: 'acme' },
    method: 'DELETE',
    path: '/orgs/acme',
    allow: false,
    status: 409,
    reasons: ['organization acme still has 2 projects: api, web'],
    policyRevision: 'sha256:abc',
    evalLatencyUs: 137,
    input: { action: 'organization:delete', facts: { organization: { exists: true, project_slugs: ['api', 'web'] } } },
    ...overrides,
  };
}

async function countQueries<T>(work: () => Promise<T>): Promise<{ result: T; queries: { sql: string; bindings: unknown[] }[] }> {
  const queries: { sql: string; bindings: unknown[] }[] = [];
  const onQuery = (query: { sql: string; bindings: unknown[] }) => queries.push(query);
  db.on('query', onQuery);
  try {
    return { result: await work(), queries };
  } finally {
    db.off('query', onQuery);
  }
}

const requestIds = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => `request-${from + i}`);
/** Rows in the order they were appended to the (freshly truncated) heap. */
const storedRequestIds = async () => (await db('decisions').select('request_id').orderBy('ctid')).map((row: { request_id: string }) => row.request_id);

describe('PgDecisionStore', () => {
  it('stores every field of a decision record', async () => {
    const record = decision(1);
    await store.insertMany([record]);
    expect(await db('decisions').where({ id: record.id }).first()).toEqual({
      id: record.id,
      time: record.time,
      request_id: 'request-1',
      subject: 'alice',
      user_id: record.userId,
      organization: 'acme',
      action: 'organization:delete',
      resource: { type: 'organization', org: 'acme' },
      method: 'DELETE',
      path: '/orgs/acme',
      allow: false,
      status: 409,
      reasons: ['organization acme still has 2 projects: api, web'],
      policy_revision: 'sha256:abc',
      eval_latency_us: 137,
      input: record.input,
    });
  });

  it('stores the optional fields as null and keeps a JSON array input as JSON', async () => {
    const anonymous = decision(2, { subject: null, userId: null, organization: null, policyRevision: null, evalLatencyUs: null, input: null, reasons: [] });
    const listInput = decision(3, { input: ['a', { b: 1 }] });
    await store.insertMany([anonymous, listInput]);
    expect(await db('decisions').where({ id: anonymous.id }).first('subject', 'user_id', 'organization', 'policy_revision', 'eval_latency_us', 'input', 'reasons')).toEqual({
      subject: null,
      user_id: null,
      organization: null,
      policy_revision: null,
      eval_latency_us: null,
      input: null,
      reasons: [],
    });
    expect((await db('decisions').where({ id: listInput.id }).first('input')).input).toEqual(['a', { b: 1 }]);
  });

  it('writes a batch with one multi-row INSERT', async () => {
    const { queries } = await countQueries(() => store.insertMany(Array.from({ length: 500 }, (_, n) => decision(n))));
    expect(queries).toHaveLength(1);
    expect(queries[0]?.sql).toMatch(/^insert into "decisions"/);
    expect(await storedRequestIds()).toEqual(requestIds(0, 500));
  });

  it('writes a batch too large for one statement atomically, in order', async () => {
    await store.insertMany(Array.from({ length: 9000 }, (_, n) => decision(n)));
    expect(await storedRequestIds()).toEqual(requestIds(0, 9000));
  });

  it('writes nothing of a batch that fails, and reports an unavailable dependency', async () => {
    const duplicate = decision(1);
    const error = await store.insertMany([decision(0), duplicate, duplicate]).catch((thrown: unknown) => thrown);
    expect(error).toBeInstanceOf(DependencyError);
    expect((error as Error).message).toBe('could not write 3 decision records to PostgreSQL');
    expect(await db('decisions').count({ n: '*' })).toEqual([{ n: '0' }]);
  });
});

describe('BatchingDecisionRecorder over PostgreSQL', () => {
  let recorder: BatchingDecisionRecorder;
  let errors: Error[];

  beforeEach(() => {
    errors = [];
    recorder = new BatchingDecisionRecorder(store, { batchSize: 500, delayMs: 50, retryInitialMs: 10, retryMaxMs: 50, onError: (error) => errors.push(error) });
  });

  afterEach(async () => {
    await recorder.close();
  });

  it('writes decisions off the call path', async () => {
    const { queries } = await countQueries(async () => recorder.record(decision(0)));
    expect(queries).toEqual([]);
    expect(await db('decisions').count({ n: '*' })).toEqual([{ n: '0' }]);

    await recorder.flush();
    expect(await storedRequestIds()).toEqual(['request-0']);
  });

  it('writes 1,000 decisions in two batches, in the order they were recorded', async () => {
    const { queries } = await countQueries(async () => {
      for (let n = 0; n < 1000; n++) recorder.record(decision(n));
      await recorder.flush();
    });
    expect(queries.filter((query) => query.sql.startsWith('insert'))).toHaveLength(2);
    expect(await storedRequestIds()).toEqual(requestIds(0, 1000));
  });

  it('writes a lone decision after the short delay, without a flush', async () => {
    recorder.record(decision(0));
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(await storedRequestIds()).toEqual(['request-0']);
  });

  it('flush() waits for the decisions recorded before it', async () => {
    for (let n = 0; n < 3; n++) recorder.record(decision(n));
    await recorder.flush();
    expect(await storedRequestIds()).toEqual(requestIds(0, 3));
  });

  it('keeps decisions while the table cannot be written and writes them, in order, once it can', async () => {
    await db.raw('alter table decisions rename to decisions_away');
    try {
      for (let n = 0; n < 3; n++) recorder.record(decision(n));
      await new Promise((resolve) => setTimeout(resolve, 150));
      expect(errors.length).toBeGreaterThan(0);
      expect(errors[0]?.cause).toBeInstanceOf(DependencyError);
      for (let n = 3; n < 5; n++) recorder.record(decision(n));
      expect(recorder.backlog).toBe(5);
    } finally {
      await db.raw('alter table decisions_away rename to decisions');
    }
    await recorder.flush();
    expect(await storedRequestIds()).toEqual(requestIds(0, 5));
    expect(recorder.backlog).toBe(0);
  });
});
