// The decision log against a real PostgreSQL: PgDecisionStore's hash-chained rows, several
// writers appending at once, and the batching recorder writing through it off the request
// path, in order, through an outage.
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Knex } from 'knex';
import { createDatabase } from '../../db/database';
import { DependencyError } from '../../base/errors';
import { createTestDatabase, type TestDatabase } from '../../../test/support/test-database';
import { waitFor } from '../../../test/support/wait-for';
import { BatchingDecisionRecorder } from '../recording/batching-decision-recorder';
import * as decisionChain from './decision-chain';
import { canonicalJson, chainHash, GENESIS_HASH, prepareDecision } from './decision-chain';
import { verifyChain } from './decision-chain-verifier';
import { DecisionSpool } from '../recording/decision-spool';
import type { DecisionRecord } from '../decision-record';
import { CANONICAL_CONTENT_SQL, INPUT_SQL, PgDecisionQueryStore } from '../store/pg-decision-query-store';
import { partitionName, PgDecisionPartitions } from '../store/pg-decision-partitions';
import { CHAIN_LOCK_SPACE, PgDecisionStore } from './pg-decision-store';

let database: TestDatabase;
let db: Knex;
let store: PgDecisionStore;
const CHAIN = 'gw-1';
const head = () => db<{ chain: string; seq: string; hash: string }>('decision_chain_head').where({ chain: CHAIN }).first('seq', 'hash');

beforeAll(async () => {
  database = await createTestDatabase();
  db = database.db;
});

afterAll(async () => {
  await database.drop();
});

beforeEach(async () => {
  await db('decisions').truncate();
  await db('decision_ids').truncate();
  await db('decision_chain_head').delete();
  await db('decision_chain_anchor').delete();
  await db.raw('alter sequence decision_seq restart');
  // A process that starts with the chain as it is now (empty): it knows no head yet.
  store = new PgDecisionStore(db, CHAIN);
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

const append = (records: DecisionRecord[], into = store) => into.append(records.map(prepareDecision));

/**
 * `work` with a pool of one connection and a store of the chain on it: what that connection
 * prepared, or counted, can be read from it.
 */
async function onOneConnection(work: (single: Knex, own: PgDecisionStore) => Promise<void>): Promise<void> {
  const single = createDatabase({ url: database.url, poolMax: 1 });
  try {
    await work(single, new PgDecisionStore(single, CHAIN));
  } finally {
    await single.destroy();
  }
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
/** Request ids in chain order. */
const storedRequestIds = async () =>
  (await db('decisions').select('request_id').orderBy('seq')).map((row: { request_id: string }) => row.request_id);

describe('PgDecisionStore', () => {
  it('stores every field of a decision record, chained to the genesis hash', async () => {
    const record = decision(1, {
      code: 'organization_has_projects',
      codeParams: { organization: 'acme', project_count: 2, projects: ['api', 'web'] },
    });
    expect(await append([record])).toEqual({ inserted: 1, skipped: 0 });
    const row = (await db('decisions').where({ id: record.id }).first()) as { hash: string } & Record<string, unknown>;
    expect(row).toEqual({
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
      // The input as its canonical text, which PostgreSQL stores without parsing; readers parse it (INPUT_SQL).
      input: null,
      input_text: canonicalJson(record.input),
      dry_run: false,
      directory_version: null,
      code: 'organization_has_projects',
      code_params: { organization: 'acme', project_count: 2, projects: ['api', 'web'] },
      recorded_at: expect.any(Date) as Date,
      seq: '1',
      chain: CHAIN,
      chain_seq: '1',
      prev_hash: GENESIS_HASH,
      hash: chainHash(GENESIS_HASH, CHAIN, 1, prepareDecision(record).content),
    });
    expect(await head()).toEqual({ seq: '1', hash: row.hash });
  });

  it('hashes exactly the text PostgreSQL renders for the stored record, however awkward its values', async () => {
    const awkward = {
      numbers: [1e21, -1.5e-7, 5e-324, -0, 0.1 + 0.2, 2 ** 53 + 2, 123456789.125, 1e300, Number.NaN],
      keys: { é: 1, '😀': 2, '\uffff': 3, '10': 4, '9': 5, zz: 6, a: 7, 'a b': 8, '': 9 },
      strings: [
        'quote " backslash \\ slash /',
        'tab\tline\nfeed\rcr\u0001\u001f\u007f',
        '\u2028\u2029',
        'x\u0000y',
        'lone \ud800 surrogate',
        '😀 é ü 中文',
      ],
      empty: { object: {}, array: [], nested: [[], {}] },
      flags: [true, false, null],
    };
    const records = [
      decision(1),
      decision(2, { input: awkward, resource: { type: 'x', ünïcode: 'ñ' }, dryRun: true, reasons: [] }),
      decision(3, { id: randomUUID().toUpperCase(), subject: 'sub with "quotes" and \n newline', input: [1, 'two', { three: 3 }] }),
      decision(4, { input: null, userId: null, evalLatencyUs: null, policyRevision: null, organization: null }),
      decision(5, {
        code: 'c, "input": null',
        codeParams: { a: 1, input: null, action: ', "input": null, "action": ' },
        directoryVersion: 7,
      }),
    ];
    await append(records);
    const query = new PgDecisionQueryStore(db);
    const rendered = await query.chainPage(CHAIN, 0, 10);
    expect(rendered.map((row) => row.content)).toEqual(records.map((record) => prepareDecision(record).content));
    expect(await verifyChain(query)).toMatchObject({ ok: true, checked: 5 });
    // The same check with SQL alone, as an auditor without this code could run it.
    const { rows: mismatched } = await db.raw<{ rows: { seq: string }[] }>(
      `select seq from decisions where hash <> encode(sha256(convert_to(prev_hash || E'\\n' || chain || E'\\n' || chain_seq || E'\\n' || ${CANONICAL_CONTENT_SQL}, 'UTF8')), 'hex')`,
    );
    expect(mismatched).toEqual([]);
    const stored = await db('decisions')
      .where({ seq: 2 })
      .first<{ dry_run: boolean; input: { strings: string[]; numbers: (number | null)[] } } | undefined>(
        db.raw(`${INPUT_SQL} as input`),
        'dry_run',
      );
    expect(stored?.dry_run).toBe(true);
    // PostgreSQL cannot store NUL or a lone surrogate: they became U+FFFD before hashing.
    expect(stored?.input.strings.slice(3)).toEqual(['x\ufffdy', 'lone \ufffd surrogate', '😀 é ü 中文']);
    expect(stored?.input.numbers).toEqual([1e21, -1.5e-7, 5e-324, 0, 0.1 + 0.2, 2 ** 53 + 2, 123456789.125, 1e300, null]);
  });

  it('reads and verifies records with their input as text beside records from before, whose input is jsonb', async () => {
    const records = [decision(1), decision(2, { input: null }), decision(3, { input: { n: 2 ** 60, s: 'x\\"y' } })];
    await append(records);
    // Records written before migration 20261201000001 kept the input as jsonb and no text.
    await db('decisions')
      .where({ id: records[0]!.id })
      .update({ input: db.raw('input_text::jsonb'), input_text: null });
    const query = new PgDecisionQueryStore(db);
    expect(await verifyChain(query)).toMatchObject({ ok: true, checked: 3 });
    for (const record of records) expect((await query.get(record.id))?.input).toEqual(record.input);
    const inputs = await db('decisions')
      .orderBy('seq')
      .select<{ input: unknown }[]>(db.raw(`${INPUT_SQL} as input`));
    expect(inputs).toEqual([{ input: records[0]!.input }, { input: null }, { input: { n: 2 ** 60, s: 'x\\"y' } }]);

    // The text is what the hash covers: an edit of it is found, even one that leaves the same JSON.
    const stored = await db('decisions').where({ id: records[2]!.id }).first<{ input_text: string }>('input_text');
    await db('decisions')
      .where({ id: records[2]!.id })
      .update({ input_text: stored.input_text.replace('{', '{ ') });
    expect(await verifyChain(query)).toMatchObject({ ok: false, broken: { id: records[2]!.id } });
    await db('decisions').where({ id: records[2]!.id }).update({ input_text: '{"n": 1, "s": "x\\"y"}' });
    expect(await verifyChain(query)).toMatchObject({ ok: false, broken: { id: records[2]!.id } });
  });

  it('stores the optional fields as null and keeps a JSON array input as JSON', async () => {
    const anonymous = decision(2, {
      subject: null,
      userId: null,
      organization: null,
      policyRevision: null,
      evalLatencyUs: null,
      input: null,
      reasons: [],
    });
    const listInput = decision(3, { input: ['a', { b: 1 }] });
    await append([anonymous, listInput]);
    expect(
      await db('decisions')
        .where({ id: anonymous.id })
        .first('subject', 'user_id', 'organization', 'policy_revision', 'eval_latency_us', db.raw(`${INPUT_SQL} as input`), 'reasons'),
    ).toEqual({
      subject: null,
      user_id: null,
      organization: null,
      policy_revision: null,
      eval_latency_us: null,
      input: null,
      reasons: [],
    });
    expect(
      (
        await db('decisions')
          .where({ id: listInput.id })
          .first<{ input: unknown } | undefined>(db.raw(`${INPUT_SQL} as input`))
      )?.input,
    ).toEqual(['a', { b: 1 }]);
  });

  it('writes a batch with one INSERT, whatever its size', async () => {
    const { queries } = await countQueries(() => append(Array.from({ length: 5000 }, (_, n) => decision(n))));
    expect(queries.filter((query) => /\binsert into decisions /.test(query.sql))).toHaveLength(1);
    expect(await storedRequestIds()).toEqual(requestIds(0, 5000));
    expect(await head()).toMatchObject({ seq: '5000' });
  });

  it("reads the head of a chain it has not appended to yet in a transaction: three statements besides BEGIN and COMMIT, the lock's first", async () => {
    await append([decision(0)], new PgDecisionStore(db, CHAIN));
    const batches = [];
    for (const from of [1, 4]) {
      const fresh = new PgDecisionStore(db, CHAIN);
      batches.push((await countQueries(() => append([decision(from), decision(from + 1), decision(from + 2)], fresh))).queries);
    }
    expect(batches[0]!.map((query) => query.sql)[0]).toMatch(/^BEGIN/i);
    // A new process also makes sure of the month's partition, once.
    const texts = batches.map((queries) => queries.map((query) => query.sql).filter((sql) => !/^(BEGIN|COMMIT)|to_regclass/i.test(sql)));
    expect(texts[0]).toHaveLength(3);
    expect(texts[1]).toEqual(texts[0]);
    expect(texts[0]![0]).toMatch(/set_config\('statement_timeout'.*pg_advisory_xact_lock|pg_advisory_xact_lock[\s\S]*statement_timeout/);
    expect(await head()).toMatchObject({ seq: '7' });
    expect(await verifyChain(new PgDecisionQueryStore(db))).toMatchObject({ ok: true, checked: 7 });
  });

  it('writes each later batch of its chain in one statement, the same text every time, without BEGIN or COMMIT', async () => {
    await append([decision(0)]);
    const batches = [];
    for (const from of [1, 4])
      batches.push((await countQueries(() => append([decision(from), decision(from + 1), decision(from + 2)]))).queries);
    const texts = batches.map((queries) => queries.map((query) => query.sql));
    expect(texts[0]).toHaveLength(1);
    expect(texts[1]).toEqual(texts[0]);
    // The chain's lock, bounded by lock_timeout, taken in the statement that draws the seqs.
    expect(texts[0]![0]).toMatch(/set_config\('lock_timeout'[\s\S]*pg_advisory_xact_lock[\s\S]*nextval\('decision_seq'\)/);
    expect(await head()).toMatchObject({ seq: '7' });
    expect((await db('decisions').select('seq').orderBy('seq')).map((row: { seq: string }) => Number(row.seq))).toEqual([
      1, 2, 3, 4, 5, 6, 7,
    ]);
    expect(await verifyChain(new PgDecisionQueryStore(db))).toMatchObject({ ok: true, checked: 7 });
  });

  it('sends the one statement prepared, planned once per connection, and still writes after a partition is made and dropped under it', async () => {
    await onOneConnection(async (single, own) => {
      const prepared = async () =>
        (
          await single.raw<{ rows: { executions: number }[] }>(
            `select generic_plans + custom_plans as executions from pg_prepared_statements where name like 'portcullis_decision_append_%'`,
          )
        ).rows.map((row) => Number(row.executions));
      // The first batch reads the head in a transaction; the seven after it are the one statement.
      for (let n = 0; n < 16; n += 2) await append([decision(n), decision(n + 1)], own);
      expect(await prepared()).toEqual([7]);
      // Another month's partition attached and dropped: the plan it had is made again.
      const month = new Date(Date.UTC(2031, 0, 1));
      await new PgDecisionPartitions(single).ensure(month);
      await single.raw(`drop table ${partitionName(month)}`);
      expect(await append([decision(16), decision(17)], own)).toEqual({ inserted: 2, skipped: 0 });
      expect(await prepared()).toEqual([8]);
      expect(await verifyChain(new PgDecisionQueryStore(db))).toMatchObject({ ok: true, checked: 18 });
    });
  });

  it('reads no table that grows in the one statement, so the plan a connection keeps stays good however large the log gets', async () => {
    await onOneConnection(async (single, own) => {
      await append([decision(0)], own);
      const scans = async () => {
        // This connection's counts, sent now rather than within the second.
        await single.raw('select pg_stat_force_next_flush()');
        const { rows } = await single.raw<{ rows: { relname: string; scans: string }[] }>(
          `select relname, coalesce(seq_scan, 0) + coalesce(idx_scan, 0) as scans from pg_stat_user_tables
           where relname = 'decision_ids' or relname like 'decisions%' order by relname`,
        );
        return rows.map((row) => `${row.relname} ${row.scans}`);
      };
      const before = await scans();
      expect(await append([decision(1), decision(2)], own)).toEqual({ inserted: 2, skipped: 0 });
      expect(await scans()).toEqual(before);
      expect(await db('decision_ids').count({ n: '*' }).first()).toEqual({ n: '3' });
    });
  });

  it('notices when another process of its instance moved the head since its last batch: writes nothing in the one statement, then appends after the new head', async () => {
    const other = new PgDecisionStore(db, CHAIN);
    await append([decision(0), decision(1)]);
    await append([decision(2), decision(3)], other);
    const { result, queries } = await countQueries(() => append([decision(4), decision(5)]));
    expect(result).toEqual({ inserted: 2, skipped: 0 });
    const texts = queries.map((query) => query.sql);
    expect(texts[0]).toMatch(/^with limits/);
    expect(texts.slice(1).some((sql) => /^BEGIN/i.test(sql))).toBe(true);
    // The statement that found the head moved drew no seq: the log has no gap.
    expect(
      (await db('decisions').select('seq', 'chain_seq').orderBy('seq')).map((row: { seq: string; chain_seq: string }) => [
        Number(row.seq),
        Number(row.chain_seq),
      ]),
    ).toEqual(Array.from({ length: 6 }, (_, i) => [i + 1, i + 1]));
    expect(await storedRequestIds()).toEqual(requestIds(0, 6));
    expect(await verifyChain(new PgDecisionQueryStore(db))).toMatchObject({ ok: true, checked: 6 });
    // Its head known again, the next batch is one statement.
    expect((await countQueries(() => append([decision(6)]))).queries).toHaveLength(1);
  });

  it('notices a head that is not where it left it (the chain reset under it) and starts the chain again', async () => {
    await append([decision(0)]);
    await db('decisions').truncate();
    await db('decision_ids').truncate();
    await db('decision_chain_head').delete();
    expect(await append([decision(1)])).toEqual({ inserted: 1, skipped: 0 });
    expect(await head()).toMatchObject({ seq: '1' });
    expect(await verifyChain(new PgDecisionQueryStore(db))).toMatchObject({ ok: true, checked: 1 });
  });

  it('draws no seq in the one statement before it holds the chain lock, so a reader of the log can wait for it', async () => {
    await append([decision(0)]);
    const seqMark = async () =>
      Number((await db.raw<{ rows: { last_value: string }[] }>('select last_value from decision_seq')).rows[0]!.last_value);
    const before = await seqMark();
    const holder = await db.transaction();
    let appending: Promise<unknown> | undefined;
    try {
      await holder.raw('select pg_advisory_xact_lock(?, hashtext(?))', [CHAIN_LOCK_SPACE, CHAIN]);
      appending = append([decision(1), decision(2)]);
      await waitFor(async () => {
        const { rows } = await db.raw<{ rows: unknown[] }>(
          `select 1 from pg_stat_activity where wait_event_type = 'Lock' and wait_event = 'advisory' and query like 'with limits%'`,
        );
        return rows.length > 0 ? true : undefined;
      });
      expect(await seqMark()).toBe(before);
    } finally {
      await holder.rollback();
    }
    expect(await appending).toEqual({ inserted: 2, skipped: 0 });
    expect(await seqMark()).toBe(before + 2);
    expect(await verifyChain(new PgDecisionQueryStore(db))).toMatchObject({ ok: true, checked: 3 });
  });

  it('waits for the chain lock in the one statement too, and gives up after its timeout, writing nothing', async () => {
    const quick = new PgDecisionStore(db, CHAIN, { timeoutMs: 300 });
    await append([decision(0)], quick);
    const before = await head();
    const holder = await db.transaction();
    try {
      await holder.raw('select pg_advisory_xact_lock(?, hashtext(?))', [CHAIN_LOCK_SPACE, CHAIN]);
      const { result: error, queries } = await countQueries(() => append([decision(1)], quick).catch((thrown: unknown) => thrown));
      expect(queries.map((query) => query.sql)).toEqual([expect.stringMatching(/^with limits/)]);
      expect(error).toBeInstanceOf(DependencyError);
      expect(((error as Error).cause as Error).message).toMatch(/lock timeout/);
    } finally {
      await holder.rollback();
    }
    expect(await head()).toEqual(before);
    // After a failure it no longer trusts the head it knew: it reads it, then appends.
    const { result, queries } = await countQueries(() => append([decision(1)], quick));
    expect(result).toEqual({ inserted: 1, skipped: 0 });
    expect(queries[0]!.sql).toMatch(/^BEGIN/i);
    expect(await verifyChain(new PgDecisionQueryStore(db))).toMatchObject({ ok: true, checked: 2 });
  });

  it('hashes a large batch a slice at a time, letting the event loop turn in between', async () => {
    const batch = Array.from({ length: 500 }, (_, n) => prepareDecision(decision(n)));
    const hashing = jest.spyOn(decisionChain, 'chainHash');
    // What a request waiting for its turn sees: how many records were hashed since the last turn.
    const seen: number[] = [];
    let ticking = true;
    const tick = () => {
      seen.push(hashing.mock.calls.length);
      if (ticking) setImmediate(tick);
    };
    setImmediate(tick);
    try {
      await store.append(batch);
    } finally {
      ticking = false;
      hashing.mockRestore();
    }
    const steps = seen.slice(1).map((count, i) => count - seen[i]!);
    expect(Math.max(...steps)).toBeLessThanOrEqual(64);
    expect(seen.filter((count) => count > 0 && count < 500).length).toBeGreaterThanOrEqual(500 / 64 - 2);
    expect(await verifyChain(new PgDecisionQueryStore(db))).toMatchObject({ ok: true, checked: 500 });
  });

  it('skips records already stored, so a replayed batch is written once and the chain continues', async () => {
    const records = Array.from({ length: 4 }, (_, n) => decision(n));
    await append(records.slice(0, 2));
    expect(await append(records)).toEqual({ inserted: 2, skipped: 2 });
    expect(await storedRequestIds()).toEqual(requestIds(0, 4));
    // The one statement found two of its ids stored (on decision_ids' key) and the transaction
    // wrote the rest: the chain has no gap; the global seq may, as after any rollback.
    const rows = await db('decisions').select('seq', 'chain_seq').orderBy('seq');
    expect(rows.map((row: { chain_seq: string }) => Number(row.chain_seq))).toEqual([1, 2, 3, 4]);
    const seqs = rows.map((row: { seq: string }) => Number(row.seq));
    expect(seqs.slice(0, 2)).toEqual([1, 2]);
    expect(seqs[2]).toBeLessThan(seqs[3]!);
    expect(await verifyChain(new PgDecisionQueryStore(db))).toMatchObject({ ok: true, checked: 4 });
  });

  it('skips a record whose id is stored under another time, within a batch and across batches', async () => {
    const record = decision(1);
    // Another month: another partition, outside the time range of the batch that first stored it.
    const sameIdLater = { ...record, time: new Date(Date.UTC(2027, 1, 3, 9)) };
    const sameIdEarlier = { ...record, time: new Date(Date.UTC(2026, 9, 1, 9)) };
    expect(await append([record, sameIdLater])).toEqual({ inserted: 1, skipped: 1 });
    expect(await append([sameIdEarlier])).toEqual({ inserted: 0, skipped: 1 });
    expect(await append([{ ...sameIdLater, id: record.id.toUpperCase() }, decision(2)])).toEqual({ inserted: 1, skipped: 1 });
    expect(await db('decisions').where({ id: record.id }).select('time')).toEqual([{ time: record.time }]);
    expect(await storedRequestIds()).toEqual(['request-1', 'request-2']);
    expect(await verifyChain(new PgDecisionQueryStore(db))).toMatchObject({ ok: true, checked: 2 });
  });

  it('forgets the ids of the records retention removed, up to the seq it dropped', async () => {
    const records = Array.from({ length: 3 }, (_, n) => decision(n));
    await append(records);
    const ids = async () => (await db('decision_ids').select('seq').orderBy('seq')).map((row: { seq: string }) => Number(row.seq));
    expect(await ids()).toEqual([1, 2, 3]);
    await new PgDecisionPartitions(db).releaseIds(2);
    expect(await ids()).toEqual([3]);
  });

  it('frees the ids of a batch that fails, so its retry is written', async () => {
    const records = [decision(1), decision(2)];
    const broken = records
      .map(prepareDecision)
      .map((prepared, n) => (n === 1 ? { ...prepared, content: prepared.content.replace(/"status": 409/, '"status": "x"') } : prepared));
    await expect(store.append(broken)).rejects.toBeInstanceOf(DependencyError);
    expect(await append(records)).toEqual({ inserted: 2, skipped: 0 });
  });

  it('creates the partition of a month that has none yet', async () => {
    const later = decision(1, { time: new Date(Date.UTC(2031, 4, 17, 8)) });
    await append([later]);
    const { rows } = await db.raw<{ rows: { partition: string }[] }>(
      `select tableoid::regclass::text as partition from decisions where id = ?`,
      [later.id],
    );
    expect(rows).toEqual([{ partition: 'decisions_y2031m05' }]);
  });

  it("gives up waiting for its chain's lock after its timeout, writing nothing, and writes once the lock is free", async () => {
    await append([decision(0)]);
    const before = await head();
    const quick = new PgDecisionStore(db, CHAIN, { timeoutMs: 300 });
    const holder = await db.transaction();
    try {
      // Another process of this instance, stuck mid-append.
      await holder.raw('select pg_advisory_xact_lock(?, hashtext(?))', [CHAIN_LOCK_SPACE, CHAIN]);
      const started = performance.now();
      const error = await quick.append([prepareDecision(decision(1))]).catch((thrown: unknown) => thrown);
      expect(error).toBeInstanceOf(DependencyError);
      expect(((error as Error).cause as Error).message).toMatch(/lock timeout/);
      expect(performance.now() - started).toBeLessThan(5_000);
    } finally {
      await holder.rollback();
    }
    expect(await head()).toEqual(before);
    expect(await quick.append([prepareDecision(decision(1))])).toEqual({ inserted: 1, skipped: 0 });
  });

  it('refuses a timeout that is not a positive whole number of ms', () => {
    expect(() => new PgDecisionStore(db, CHAIN, { timeoutMs: 0 })).toThrow(/positive whole number/);
    expect(() => new PgDecisionStore(db, CHAIN, { timeoutMs: 1.5 })).toThrow(/positive whole number/);
  });

  it('writes nothing of a batch that fails, keeps the chain head, and reports an unavailable dependency', async () => {
    await append([decision(0)]);
    const before = await head();
    const error = await store
      .append(
        [decision(1), decision(2)]
          .map(prepareDecision)
          .map((record, n) =>
            n === 1 ? { ...record, content: record.content.replace(/"status": 409/, '"status": "not a number"') } : record,
          ),
      )
      .catch((thrown: unknown) => thrown);
    expect(error).toBeInstanceOf(DependencyError);
    expect((error as Error).message).toBe('could not write 2 decision records to PostgreSQL');
    expect(await db('decisions').count({ n: '*' })).toEqual([{ n: '1' }]);
    expect(await head()).toEqual(before);
  });

  it('keeps one unbroken chain when several processes of one instance append at once', async () => {
    const pools = Array.from({ length: 4 }, () => createDatabase({ url: database.url, poolMax: 3 }));
    try {
      await Promise.all(
        pools.map(async (pool, writer) => {
          const own = new PgDecisionStore(pool, CHAIN);
          for (let batch = 0; batch < 10; batch++) {
            await append(
              Array.from({ length: 25 }, (_, n) => decision(writer * 1000 + batch * 25 + n)),
              own,
            );
          }
        }),
      );
    } finally {
      await Promise.all(pools.map((pool) => pool.destroy()));
    }
    const positions = (await db('decisions').select('chain_seq').orderBy('seq')).map((row: { chain_seq: string }) => Number(row.chain_seq));
    expect(positions).toEqual(Array.from({ length: 1000 }, (_, i) => i + 1));
    expect(await verifyChain(new PgDecisionQueryStore(db))).toMatchObject({ ok: true, checked: 1000 });
  });
});

describe('BatchingDecisionRecorder over PostgreSQL', () => {
  let recorder: BatchingDecisionRecorder;
  let errors: Error[];

  beforeEach(() => {
    errors = [];
    recorder = new BatchingDecisionRecorder(store, {
      batchSize: 500,
      delayMs: 50,
      retryInitialMs: 10,
      retryMaxMs: 50,
      onError: (error) => errors.push(error),
    });
  });

  afterEach(async () => {
    await recorder.close();
  });

  it('writes decisions off the call path', async () => {
    const { queries } = await countQueries(() => Promise.resolve(recorder.record(decision(0))));
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
    expect(queries.filter((query) => /\binsert into decisions /.test(query.sql))).toHaveLength(2);
    expect(await storedRequestIds()).toEqual(requestIds(0, 1000));
  });

  it('writes a lone decision after the short delay, without a flush', async () => {
    recorder.record(decision(0));
    await waitFor(async () => (await storedRequestIds()).length > 0, { what: 'the decision to be stored' });
    expect(await storedRequestIds()).toEqual(['request-0']);
  });

  it('flush() waits for the decisions recorded before it', async () => {
    for (let n = 0; n < 3; n++) recorder.record(decision(n));
    await recorder.flush();
    expect(await storedRequestIds()).toEqual(requestIds(0, 3));
  });

  it('skips a spooled record whose id is already stored under another time when the spool is replayed', async () => {
    const stored = decision(0);
    await append([stored]);
    const dir = await mkdtemp(path.join(os.tmpdir(), 'portcullis-spool-'));
    const spool = await DecisionSpool.open(dir);
    try {
      await spool.append([{ ...stored, time: new Date(Date.UTC(2026, 11, 24, 18)) }, decision(1)].map(prepareDecision));
      const replaying = new BatchingDecisionRecorder(store, {
        spool,
        delayMs: 10,
        retryInitialMs: 10,
        retryMaxMs: 50,
        onError: (error) => errors.push(error),
      });
      await replaying.flush();
      await replaying.close();
    } finally {
      await spool.close();
      await rm(dir, { recursive: true, force: true });
    }
    expect(await db('decisions').where({ id: stored.id }).select('time')).toEqual([{ time: stored.time }]);
    expect(await storedRequestIds()).toEqual(['request-0', 'request-1']);
    expect(errors).toEqual([]);
  });

  it('keeps decisions while the table cannot be written and writes them, in order, once it can', async () => {
    await db.raw('alter table decisions rename to decisions_away');
    try {
      for (let n = 0; n < 3; n++) recorder.record(decision(n));
      await waitFor(() => errors.length > 0, { what: 'a failed write' });
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
