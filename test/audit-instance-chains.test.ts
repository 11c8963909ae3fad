// One decision chain per gateway instance: three instances append at once over their own
// connections to one real PostgreSQL while a sampler watches pg_locks, and no append may wait on
// a lock another instance holds; every chain verifies afterwards, with its own checkpoints. A
// reader following the log in seq order does not skip a record that commits late. And
// `decisions verify` names the chain and the record when one of three chains is tampered with.
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import knex, { type Knex } from 'knex';
import { CheckpointSigner } from '../src/audit/chain/checkpoint-key';
import { CommittedHorizon } from '../src/audit/store/committed-horizon';
import { prepareDecision } from '../src/audit/chain/decision-chain';
import { verifyChain } from '../src/audit/chain/decision-chain-verifier';
import { verifyCheckpoints } from '../src/audit/chain/decision-checkpoint-verifier';
import { DecisionCheckpointer } from '../src/audit/chain/decision-checkpointer';
import { PgDecisionCheckpointStore } from '../src/audit/chain/pg-decision-checkpoint-store';
import { PgDecisionQueryStore } from '../src/audit/store/pg-decision-query-store';
import { PgDecisionStore } from '../src/audit/chain/pg-decision-store';
import { appendDecisions, syntheticDecision } from './support/audit-helpers';
import { requireBuild, runCli, spawnCli } from './support/cli-process';
import { createTestDatabase, type TestDatabase } from './support/test-database';
import { waitFor } from './support/wait-for';

const INSTANCES = ['gw-a', 'gw-b', 'gw-c'];
const rethrow = (error: Error): never => {
  throw error;
};

let database: TestDatabase;
let db: Knex;
const pools: Knex[] = [];

beforeEach(async () => {
  database = await createTestDatabase();
  db = database.db;
});
afterEach(async () => {
  await Promise.all(pools.splice(0).map((pool) => pool.destroy()));
  await database?.drop();
});

/** A pool of its own whose sessions carry `name` as application_name, so pg_stat_activity tells whose a lock is. */
function poolFor(name: string, max = 2): Knex {
  const pool = knex({ client: 'pg', connection: { connectionString: database.url, application_name: name }, pool: { min: 0, max } });
  pools.push(pool);
  return pool;
}

interface Wait {
  waiter: string;
  holder: string;
  locktype: string;
  key: string;
}

/**
 * Samples pg_locks until stopped: every lock some session of this database waits for
 * (granted = false), which lock it is, and whose session holds it, by application_name.
 */
function sampleWaits(sampler: Knex): { stop: () => Promise<{ samples: number; waits: Wait[] }> } {
  let running = true;
  const waits: Wait[] = [];
  let samples = 0;
  const loop = (async () => {
    while (running) {
      const { rows } = await sampler.raw<{ rows: Wait[] }>(
        `select wa.application_name as waiter, ha.application_name as holder, w.locktype,
                concat_ws('/', w.classid, w.objid, w.objsubid, w.relation, w.transactionid) as key
         from pg_locks w
         join pg_stat_activity wa on wa.pid = w.pid
         join pg_locks h on h.granted and h.pid <> w.pid and h.locktype = w.locktype
           and h.database is not distinct from w.database and h.relation is not distinct from w.relation
           and h.classid is not distinct from w.classid and h.objid is not distinct from w.objid and h.objsubid is not distinct from w.objsubid
           and h.transactionid is not distinct from w.transactionid
         join pg_stat_activity ha on ha.pid = h.pid
         where not w.granted and wa.datname = current_database()`,
      );
      waits.push(...rows);
      samples += 1;
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return { samples, waits };
    },
  };
}

/** Appends `batches` batches of `size` synthetic records to `chain` through `pool`, one after another. */
async function writer(pool: Knex, chain: string, batches: number, size: number, from: number): Promise<number> {
  const store = new PgDecisionStore(pool, chain);
  for (let batch = 0; batch < batches; batch++) {
    const records = Array.from({ length: size }, (_, i) => prepareDecision(syntheticDecision(from + batch * size + i)));
    await store.append(records);
  }
  return batches * size;
}

describe('one decision chain per instance', () => {
  it('lets three instances append at once without any append waiting on another instance, and every chain verifies', async () => {
    // Warm-up: each chain's head, its rows of the hourly counts and the policy revision exist.
    for (const [i, name] of INSTANCES.entries()) await writer(poolFor(name), name, 1, 10, i * 100_000);
    const sampling = sampleWaits(poolFor('sampler', 1));
    // Two writers share gw-a (two processes on one state folder): they must take turns, which is
    // what shows the sampler sees waits while the instances write.
    const written = await Promise.all([
      writer(poolFor('gw-a'), 'gw-a', 40, 50, 1_000),
      writer(poolFor('gw-a'), 'gw-a', 40, 50, 50_000),
      writer(poolFor('gw-b'), 'gw-b', 40, 50, 100_000 + 1_000),
      writer(poolFor('gw-c'), 'gw-c', 40, 50, 200_000 + 1_000),
    ]);
    const { samples, waits } = await sampling.stop();

    // Locks that order appends: the chain locks (advisory), a row or a transaction another append
    // holds until it commits, a table. Not PostgreSQL's own relation extension lock ("extend"),
    // held for the microseconds it takes to add a page to a table any writer shares.
    const ordering = new Set(['advisory', 'transactionid', 'tuple', 'relation']);
    const across = waits.filter((wait) => wait.waiter !== wait.holder && ordering.has(wait.locktype));
    const within = waits.filter((wait) => wait.waiter === wait.holder && wait.locktype === 'advisory');
    expect(samples).toBeGreaterThan(20);
    expect(within.length).toBeGreaterThan(0);
    expect(across).toEqual([]);

    const result = await verifyChain(new PgDecisionQueryStore(db));
    expect(result).toMatchObject({ ok: true, checked: 3 * 10 + written.reduce((a, b) => a + b, 0) });
    expect(result.chains.map((chain) => [chain.chain, chain.checked])).toEqual([
      ['gw-a', 10 + 4000],
      ['gw-b', 10 + 2000],
      ['gw-c', 10 + 2000],
    ]);
    // seq is the log's order, and it grows along each chain.
    const { rows } = await db.raw<{ rows: { n: string }[] }>(
      `select count(*) as n from (select seq < lag(seq) over (partition by chain order by chain_seq) as back from decisions) d where back`,
    );
    expect(Number(rows[0]!.n)).toBe(0);

    // Each instance signs its own chain, with the one key.
    const pair = generateKeyPairSync('ed25519');
    const signer = new CheckpointSigner(pair.privateKey);
    const store = new PgDecisionCheckpointStore(db);
    for (const chain of INSTANCES) {
      const checkpointer = new DecisionCheckpointer(store, signer, { chain, intervalMs: 60_000, onError: rethrow });
      expect(await checkpointer.checkpoint()).toMatchObject({ seq: result.chains.find((c) => c.chain === chain)!.checked });
    }
    for (const chain of result.chains) {
      expect(await verifyCheckpoints(store, pair.publicKey, { chain: chain.chain, head: chain.head })).toMatchObject({
        ok: true,
        checkpoints: 1,
      });
    }
  });

  it('has a sampler that sees instances waiting on each other when they share one lock, as every append did before', async () => {
    const sampling = sampleWaits(poolFor('sampler', 1));
    const shared = async (name: string) => {
      const pool = poolFor(name, 1);
      for (let i = 0; i < 30; i++) {
        await pool.transaction(async (trx) => {
          await trx.raw('select pg_advisory_xact_lock(?)', [7_065_724_307_001]);
          await trx.raw('select pg_sleep(0.005)');
        });
      }
    };
    await Promise.all(INSTANCES.map(shared));
    const { waits } = await sampling.stop();
    expect(waits.filter((wait) => wait.locktype === 'advisory' && wait.waiter !== wait.holder).length).toBeGreaterThan(0);
  });

  it('keeps the legacy chain apart: no instance may append to it', () => {
    expect(() => new PgDecisionStore(db, 'legacy')).toThrow(/the legacy chain takes no new records/);
  });
});

describe('following the log in seq order with several writers', () => {
  it('does not skip a record whose commit comes after a higher seq from another instance', async () => {
    const reader = new PgDecisionQueryStore(db);
    await writer(poolFor('gw-b'), 'gw-b', 1, 1, 0);
    const horizon = new CommittedHorizon(reader);
    const start = await horizon.start();
    expect(start).toBe(1);

    // A long transaction that is not an append (a report, a dump) holds a transaction id throughout:
    // the horizon does not wait for it.
    const unrelated = await poolFor('reporting').transaction();
    await unrelated.raw('select pg_current_xact_id()');

    // gw-a draws its seq first but commits last: its transaction stays open.
    const slow = await poolFor('gw-a').transaction();
    try {
      await new PgDecisionStore(slow, 'gw-a').append([prepareDecision(syntheticDecision(1))]);
      await writer(poolFor('gw-b'), 'gw-b', 1, 1, 2);
      const seqOf = async (chain: string) =>
        Number(((await slow('decisions').where({ chain }).max({ seq: 'seq' }).first()) as { seq: string }).seq);
      const late = await seqOf('gw-a');
      const early = Number(((await db('decisions').where({ chain: 'gw-b' }).max({ seq: 'seq' }).first()) as { seq: string }).seq);
      expect(late).toBeLessThan(early);
      // What a reader going by "seq > the last one seen" would do: see the higher seq now, and never the lower one.
      expect((await reader.after(start, Number.MAX_SAFE_INTEGER, {}, 100)).map((row) => row.seq)).toEqual([early]);
      // The horizon holds below the seq still in flight.
      const through = await horizon.advance();
      expect(through).toBeLessThan(late);
      expect(await reader.after(start, through, {}, 100)).toEqual([]);
      await slow.commit();
    } catch (error) {
      await slow.rollback();
      await unrelated.rollback();
      throw error;
    }
    try {
      const through = await waitFor(async () => {
        const reached = await horizon.advance();
        return reached >= 3 ? reached : undefined;
      });
      expect((await reader.after(start, through, {}, 100)).map((row) => [row.seq, row.id])).toHaveLength(2);
      expect((await reader.after(start, through, {}, 100)).map((row) => row.seq)).toEqual([2, 3]);
    } finally {
      await unrelated.rollback();
    }
  });
});

describe('portcullis decisions tail with several writers', () => {
  beforeAll(() => requireBuild());

  it('prints a record that commits after a higher seq, in seq order, instead of skipping it', async () => {
    await writer(poolFor('gw-b'), 'gw-b', 1, 1, 0);
    const child = spawnCli(['decisions', 'tail', '--format', 'ndjson', '--last', '1', '--interval', '100'], { DATABASE_URL: database.url });
    let stdout = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    const printed = () =>
      stdout
        .split('\n')
        .filter(Boolean)
        .map((line) => (JSON.parse(line) as { seq: number; request_id: string }).request_id);
    const slow = await poolFor('gw-a').transaction();
    try {
      await waitFor(() => printed().length >= 1, { timeoutMs: 15_000, what: 'the last decision' });
      // gw-a draws seq 2 and holds its commit; gw-b's seq 3 commits at once.
      await new PgDecisionStore(slow, 'gw-a').append([prepareDecision(syntheticDecision(1))]);
      await writer(poolFor('gw-b'), 'gw-b', 1, 1, 2);
      // Several polls of the tail go by while seq 3 is visible and seq 2 is not.
      const polled = Date.now();
      await waitFor(() => Date.now() - polled > 500);
      expect(printed()).toEqual(['request-0']);
      await slow.commit();
      await waitFor(() => printed().length >= 3, { timeoutMs: 15_000, what: 'the late record and the one after it' });
      expect(printed()).toEqual(['request-0', 'request-1', 'request-2']);
    } finally {
      if (!slow.isCompleted()) await slow.rollback();
      child.kill('SIGINT');
    }
    expect(await exited).toBe(0);
  });
});

describe('portcullis decisions verify over three chains', () => {
  let scratch: string;
  let publicKeyFile: string;
  let signer: CheckpointSigner;
  beforeAll(async () => {
    requireBuild();
    scratch = await mkdtemp(path.join(os.tmpdir(), 'portcullis-chains-'));
    const pair = generateKeyPairSync('ed25519');
    signer = new CheckpointSigner(pair.privateKey);
    publicKeyFile = path.join(scratch, 'checkpoint.pub.pem');
    await writeFile(publicKeyFile, pair.publicKey.export({ type: 'spki', format: 'pem' }));
  });
  afterAll(async () => rm(scratch, { recursive: true, force: true }));

  const verify = (...args: string[]) => runCli(['decisions', 'verify', ...args], { DATABASE_URL: database.url });

  /** 30 records in each of three chains, interleaved in seq, each chain checkpointed at its head. */
  async function threeChains(): Promise<void> {
    for (let round = 0; round < 3; round++) {
      for (const [i, chain] of INSTANCES.entries()) await appendDecisions(db, 10, i * 1000 + round * 10, () => ({}), chain);
    }
    const store = new PgDecisionCheckpointStore(db);
    for (const chain of INSTANCES) {
      await new DecisionCheckpointer(store, signer, { chain, intervalMs: 60_000, onError: rethrow }).checkpoint();
    }
  }

  const record = async (chain: string, seq: number) =>
    (await db<{ chain: string; chain_seq: number; id: string; seq: string; hash: string; prev_hash: string }>('decisions')
      .where({ chain, chain_seq: seq })
      .first('id', 'seq', 'hash', 'prev_hash'))!;

  it('prints a line per chain, and names the chain and the record when one of three was edited', async () => {
    await threeChains();
    const intact = await verify('--public-key', publicKeyFile);
    expect(intact).toMatchObject({ code: 0, stderr: '' });
    for (const chain of INSTANCES)
      expect(intact.stdout).toMatch(new RegExp(`^chain ${chain}: 30 records intact \\(head: seq 30, .*1 signed checkpoint holds`, 'm'));
    expect(intact.stdout).toMatch(/verified 90 decision records in [\d.]+ s: all 3 chains are intact/);

    const edited = await record('gw-b', 17);
    await db('decisions').where({ id: edited.id }).update({ status: 201 });
    const run = await verify();
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(`the decision chain gw-b is broken at decision ${edited.id} (seq 17): content edited`);
    expect(run.stdout).toMatch(/^chain gw-a: 30 records intact/m);
    expect(run.stdout).toMatch(/^chain gw-c: 30 records intact/m);
    expect(run.stdout).not.toContain('gw-b');
  });

  it("catches a chain's deleted tail by its checkpoint, when the head was moved back to hide it", async () => {
    await threeChains();
    const last = await record('gw-c', 25);
    await db.transaction(async (trx) => {
      await trx('decisions').where({ chain: 'gw-c' }).andWhere('chain_seq', '>', 25).delete();
      await trx('decision_chain_head').where({ chain: 'gw-c' }).update({ seq: 25, hash: last.hash });
    });
    // The chain alone cannot tell.
    expect(await verify()).toMatchObject({ code: 0 });
    const run = await verify('--public-key', publicKeyFile);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('the decision log was tampered with: chain gw-c: the checkpoint of seq 30 (signed ');
    expect(run.stderr).toContain('the chain head is at seq 25, behind this checkpoint');
    expect(run.stdout).toMatch(/^chain gw-a: 30 records intact/m);
  });

  it('exports the three chains and verifies the file offline, naming the chain of an edited line', async () => {
    await threeChains();
    const exported = await runCli(['decisions', 'export', '--since', '2026-11-01'], { DATABASE_URL: database.url });
    expect({ code: exported.code, stderr: exported.stderr }).toEqual({ code: 0, stderr: '' });
    const file = path.join(scratch, 'three.ndjson');
    await writeFile(file, exported.stdout);
    const offline = await runCli(['decisions', 'verify', '--file', file, '--public-key', publicKeyFile]);
    expect({ code: offline.code, stderr: offline.stderr }).toEqual({ code: 0, stderr: '' });
    for (const chain of INSTANCES) {
      expect(offline.stdout).toMatch(
        new RegExp(`^chain ${chain}: 30 records \\(seq 1 to 30, head hash [0-9a-f]{64}\\); the signed checkpoint of seq 30 .* holds$`, 'm'),
      );
    }
    expect(offline.stdout).toMatch(/^verified 90 decision records in three\.ndjson \(ndjson, 3 chains\): every chain in it is intact$/m);

    const lines = exported.stdout.split('\n');
    const victim = lines.findIndex((line) => line.startsWith('{"chain": "gw-b", "seq": 12,'));
    lines[victim] = lines[victim]!.replace('"request_id": "request-', '"request_id": "forged-');
    await writeFile(file, lines.join('\n'));
    const edited = await runCli(['decisions', 'verify', '--file', file]);
    expect(edited.code).toBe(1);
    expect(edited.stderr).toContain(
      `at line ${victim + 1} (seq 12): content edited: the hash does not match the record (or it was moved from another chain); in chain gw-b,`,
    );
  });

  it('catches a record moved to another chain, even with both heads and its place in the log made to fit', async () => {
    await threeChains();
    const moved = await record('gw-a', 30);
    const before = await record('gw-a', 29);
    const head = await record('gw-b', 30);
    await db.transaction(async (trx) => {
      await trx('decisions').where({ id: moved.id }).update({ chain: 'gw-b', chain_seq: 31, seq: 1000, prev_hash: head.hash });
      await trx('decision_chain_head').where({ chain: 'gw-a' }).update({ seq: 29, hash: before.hash });
      await trx('decision_chain_head').where({ chain: 'gw-b' }).update({ seq: 31, hash: moved.hash });
    });
    const run = await verify();
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(`the decision chain gw-b is broken at decision ${moved.id} (seq 31): content edited`);
  });
});
