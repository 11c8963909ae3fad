// Signed checkpoints, as an auditor relies on them: `decisions verify --public-key` over a
// real chain checkpointed by the real checkpointer, then the attacks the hash chain alone
// cannot see (the oldest records deleted and the anchor moved, the whole chain rewritten, the
// newest records cut with the head moved back) and edits to the checkpoints themselves, each
// done with SQL behind the gateway's back. Plus the gateway signing checkpoints by itself.
import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Knex } from 'knex';
import { CheckpointSigner } from '../src/audit/chain/checkpoint-key';
import { DecisionCheckpointer } from '../src/audit/chain/decision-checkpointer';
import { DecisionRetention } from '../src/audit/store/decision-retention';
import { PgDecisionCheckpointStore } from '../src/audit/chain/pg-decision-checkpoint-store';
import { CANONICAL_CONTENT_SQL } from '../src/audit/store/pg-decision-query-store';
import { migrationConfig } from '../src/db/database';
import { appendDecisions, TEST_CHAIN } from './support/audit-helpers';
import { requireBuild, runCli } from './support/cli-process';
import { seedDirectory } from './support/directory-fixtures';
import { startHarness } from './support/gateway-harness';
import { createTestDatabase, type TestDatabase } from './support/test-database';
import { waitFor } from './support/wait-for';

const execFileAsync = promisify(execFile);
const CHAINS_MIGRATION = '20261130000030_decision_chains.js';

let scratch: string;
let publicKeyFile: string;
let otherPublicKeyFile: string;
let signer: CheckpointSigner;
let database: TestDatabase;
let db: Knex;

beforeAll(async () => {
  requireBuild();
  scratch = await mkdtemp(path.join(os.tmpdir(), 'portcullis-checkpoints-'));
  const pair = generateKeyPairSync('ed25519');
  signer = new CheckpointSigner(pair.privateKey);
  publicKeyFile = path.join(scratch, 'checkpoint.pub.pem');
  await writeFile(publicKeyFile, pair.publicKey.export({ type: 'spki', format: 'pem' }));
  otherPublicKeyFile = path.join(scratch, 'other.pub.pem');
  await writeFile(otherPublicKeyFile, generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }));
});
afterAll(async () => rm(scratch, { recursive: true, force: true }));
beforeEach(async () => {
  database = await createTestDatabase();
  db = database.db;
});
afterEach(async () => database?.drop());

const verify = (...args: string[]) => runCli(['decisions', 'verify', ...args], { DATABASE_URL: database.url });
const verifySigned = () => verify('--public-key', publicKeyFile);
const hashAt = async (seq: number) => (await db<{ seq: number; hash: string }>('decisions').where({ seq }).first('hash'))!.hash;

/** A checkpointer whose clock is `times`, one per checkpoint. */
function checkpointer(times: string[]): DecisionCheckpointer {
  const clock = times.map((time) => new Date(time));
  return new DecisionCheckpointer(new PgDecisionCheckpointStore(db), signer, {
    chain: TEST_CHAIN,
    intervalMs: 60_000,
    now: () => clock.shift() ?? new Date(),
    onError: (error) => {
      throw error;
    },
  });
}

/** 320 records, checkpointed at seq 100, 200 and 300 a minute apart. */
async function checkpointedChain(): Promise<void> {
  const writer = checkpointer(['2026-11-30T09:00:00Z', '2026-11-30T09:01:00Z', '2026-11-30T09:02:00Z']);
  for (const from of [0, 100, 200]) {
    await appendDecisions(db, 100, from);
    expect(await writer.checkpoint()).toMatchObject({ seq: from + 100 });
  }
  await appendDecisions(db, 20, 300);
}

describe('portcullis decisions verify --public-key', () => {
  it('passes an untampered chain with its checkpoints and says which checkpoint is the newest', async () => {
    await checkpointedChain();
    const run = await verifySigned();
    expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
    expect(run.stdout).toMatch(
      /^chain test-instance: 320 records intact \(head: seq 320, hash [0-9a-f]{64}\); 3 signed checkpoints hold \(newest: seq 300, signed 2026-11-30T09:02:00\.000Z;.*\nverified 320 decision records in [\d.]+ s: the chain is intact\n$/,
    );
  });

  it('writes a checkpoint only when the head moved, and once per head however many gateways try at once', async () => {
    await appendDecisions(db, 10);
    const first = checkpointer(['2026-11-30T09:00:00Z', '2026-11-30T09:05:00Z']);
    expect(await first.checkpoint()).toMatchObject({ seq: 10, prevSeq: null });
    expect(await first.checkpoint()).toBeUndefined();
    await appendDecisions(db, 5, 10);
    const gateways = ['2026-11-30T09:10:00Z', '2026-11-30T09:10:01Z', '2026-11-30T09:10:02Z'].map((time) => checkpointer([time]));
    const written = (await Promise.all(gateways.map((gateway) => gateway.checkpoint()))).filter(Boolean);
    expect(written).toEqual([expect.objectContaining({ seq: 15, prevSeq: 10 }) as unknown]);
    expect(await db('decision_checkpoints').orderBy('seq').pluck('seq')).toEqual(['10', '15']);
  });

  it('fails naming the anchor when the oldest records were deleted and the anchor moved by SQL', async () => {
    await checkpointedChain();
    const hash = await hashAt(150);
    await db('decisions').where('seq', '<=', 150).delete();
    // Made to look like a retention run, but no key signed it.
    await db('decision_chain_anchor').update({ seq: 150, hash, moved_at: new Date(), retention_days: 1 });
    expect((await verify()).code).toBe(0);
    const run = await verifySigned();
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('the anchor (decision_chain_anchor, seq 150): it was moved without a signed retention run');
  });

  it('fails naming the first checkpoint whose record changed when the whole chain was rewritten with SQL', async () => {
    await checkpointedChain();
    const signed = await hashAt(200);
    // Seq 120 edited, then every hash from it on recomputed and the head moved: a valid chain.
    await db.raw(`
      do $$
      declare
        previous text := (select hash from decisions where seq = 119);
        row record;
      begin
        update decisions set reasons = '{forged}' where seq = 120;
        for row in select seq from decisions where seq >= 120 order by seq loop
          update decisions set prev_hash = previous,
            hash = encode(sha256(convert_to(previous || E'\\n' || chain || E'\\n' || chain_seq || E'\\n' || ${CANONICAL_CONTENT_SQL}, 'UTF8')), 'hex')
          where seq = row.seq returning hash into previous;
        end loop;
        update decision_chain_head set hash = previous;
      end $$`);
    expect((await verify()).code).toBe(0);
    const run = await verifySigned();
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(
      `the checkpoint of seq 200 (signed 2026-11-30T09:01:00.000Z): seq 200 now has hash ${await hashAt(200)}, not the signed ${signed}: the chain was rewritten`,
    );
  });

  it('fails when the newest records were deleted and the head moved back', async () => {
    await checkpointedChain();
    const hash = await hashAt(250);
    await db('decisions').where('seq', '>', 250).delete();
    await db('decision_chain_head').update({ seq: 250, hash });
    expect((await verify()).code).toBe(0);
    const run = await verifySigned();
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(
      'the checkpoint of seq 300 (signed 2026-11-30T09:02:00.000Z): the chain head is at seq 250, behind this checkpoint',
    );
  });

  it('fails naming the checkpoint whose row was edited', async () => {
    await checkpointedChain();
    await db('decision_checkpoints')
      .where({ seq: 200 })
      .update({ hash: await hashAt(199) });
    const run = await verifySigned();
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(
      'the checkpoint of seq 200 (signed 2026-11-30T09:01:00.000Z): its signature does not hold: the row was edited after it was signed',
    );
  });

  it('fails when a checkpoint was deleted, or all of them', async () => {
    await checkpointedChain();
    await db('decision_checkpoints').where({ seq: 200 }).delete();
    const gap = await verifySigned();
    expect(gap.code).toBe(1);
    expect(gap.stderr).toContain(
      'the checkpoint of seq 300 (signed 2026-11-30T09:02:00.000Z): it was signed after the checkpoint of seq 200, but the one before it now is the checkpoint of seq 100',
    );
    await db('decision_checkpoints').delete();
    const none = await verifySigned();
    expect(none.code).toBe(1);
    expect(none.stderr).toContain('the checkpoints: none is stored, though the chain has 320 records');
  });

  it('fails on checkpoints signed by another key, naming both keys', async () => {
    await checkpointedChain();
    const run = await verify('--public-key', otherPublicKeyFile);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(
      /the checkpoint of seq 100 \(signed [^)]+\): its signature does not hold: the row was edited, or signed with another key \(key [0-9a-f]{16}; this public key is [0-9a-f]{16}\)/,
    );
  });

  /** Jan, Feb and Mar 2020, 100 records each, `recorded_at` set to their time, checkpointed at `times`; then retention on 2020-04-15. */
  async function retainedChain(times: string[]): Promise<void> {
    const writer = checkpointer(times);
    for (const [i, month] of ['2020-01-10', '2020-02-10', '2020-03-10'].entries()) {
      await appendDecisions(db, 100, i * 100, () => ({ time: new Date(`${month}T00:00:00Z`) }));
      await writer.checkpoint();
    }
    await db('decisions').update({ recorded_at: db.ref('time') });
    // run() throws its errors itself; onError is for the periodic runs.
    const retention = new DecisionRetention(db, { retentionDays: 30, signer, onError: () => undefined });
    const run = await retention.run(new Date('2020-04-15T00:00:00Z'));
    expect(run.dropped.map((partition) => partition.name)).toEqual(['decisions_y2020m01', 'decisions_y2020m02']);
    expect(await db('decision_chain_anchor').first('seq', 'moved_at', 'retention_days')).toEqual({
      seq: '200',
      moved_at: new Date('2020-04-15T00:00:00Z'),
      retention_days: 30,
    });
  }

  it('passes after a signed retention run moved the anchor', async () => {
    // Stored then, checkpointed at the end of each month.
    await retainedChain(['2020-01-31T23:00:00Z', '2020-02-29T23:00:00Z', '2020-03-31T23:00:00Z']);
    const run = await verifySigned();
    expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
    expect(run.stdout).toMatch(/^chain test-instance: 100 records intact .*; 3 signed checkpoints hold/);
  });

  it('prunes the checkpoints before the newest one below the anchor, and still passes; deleting that one too fails', async () => {
    // January in two halves, each checkpointed (seq 50 and 100), then February and March.
    const writer = checkpointer(['2020-01-05T23:00:00Z', '2020-01-31T23:00:00Z', '2020-02-29T23:00:00Z', '2020-03-31T23:00:00Z']);
    for (const [offset, count, day] of [
      [0, 50, '2020-01-05'],
      [50, 50, '2020-01-10'],
      [100, 100, '2020-02-10'],
      [200, 100, '2020-03-10'],
    ] as const) {
      await appendDecisions(db, count, offset, () => ({ time: new Date(`${day}T00:00:00Z`) }));
      await writer.checkpoint();
    }
    await db('decisions').update({ recorded_at: db.ref('time') });
    await new DecisionRetention(db, { retentionDays: 30, signer, onError: () => undefined }).run(new Date('2020-04-15T00:00:00Z'));
    expect(await db('decision_chain_anchor').first('seq')).toEqual({ seq: '200' });
    expect(await db('decision_checkpoints').orderBy('seq').pluck('seq')).toEqual(['100', '200', '300']);

    const run = await verifySigned();
    expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
    expect(run.stdout).toMatch(/3 signed checkpoints hold/);

    await db('decision_checkpoints').where({ seq: 100 }).delete();
    const cut = await verifySigned();
    expect(cut.code).toBe(1);
    expect(cut.stderr).toContain(
      'the checkpoint of seq 200 (signed 2020-02-29T23:00:00.000Z): it was signed after the checkpoint of seq 100, but the one before it now is none',
    );
  });

  it('refuses an anchor newer than retention allows: records back-dated by SQL so that retention dropped them early', async () => {
    // The checkpoint of seq 100 says seq 101 to 200 were stored after 2020-03-20; their
    // recorded_at was back-dated, so the retention run of 2020-04-15 dropped them at 26 days.
    await retainedChain(['2020-03-20T00:00:00Z', '2020-03-21T00:00:00Z', '2020-03-22T00:00:00Z']);
    expect((await verify()).code).toBe(0);
    const run = await verifySigned();
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(
      'the anchor (decision_chain_anchor, seq 200): it is newer than retention allows: seq 200 was stored after 2020-03-20T00:00:00.000Z (the checkpoint of seq 100), less than 30 days before the retention run of 2020-04-15T00:00:00.000Z',
    );
  });

  it('fails when the anchor row of a signed retention run was edited', async () => {
    await retainedChain(['2020-01-31T23:00:00Z', '2020-02-29T23:00:00Z', '2020-03-31T23:00:00Z']);
    await db('decision_chain_anchor').update({ retention_days: 1 });
    const run = await verifySigned();
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(
      'the anchor (decision_chain_anchor, seq 200): its signature does not hold: the row was edited after it was signed',
    );
  });

  it('exits 2 for a public key file that is missing or not an Ed25519 key', async () => {
    const missing = await verify('--public-key', path.join(scratch, 'absent.pem'));
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/^portcullis: --public-key: cannot read .*absent\.pem: ENOENT\n$/);
    const rsa = path.join(scratch, 'rsa.pub.pem');
    await writeFile(rsa, generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ type: 'spki', format: 'pem' }));
    const wrongKind = await verify('--public-key', rsa);
    expect(wrongKind.code).toBe(2);
    expect(wrongKind.stderr).toContain('is a rsa key; checkpoints are signed with Ed25519');
  });
});

describe('rolling back past the checkpoints', () => {
  it('refuses while signed checkpoints of an instance chain exist, saying how to export them first', async () => {
    await checkpointedChain();
    const completed = async () =>
      ((await db.migrate.list(migrationConfig())) as [{ name: string }[], unknown[]])[0].map((migration) => migration.name);
    while ((await completed()).at(-1) !== CHAINS_MIGRATION) await db.migrate.down(migrationConfig());
    await expect(db.migrate.down(migrationConfig())).rejects.toThrow(
      /refusing to roll back: 3 signed checkpoints and 0 retention anchors of per-instance chains would be lost; export them first .*\\copy decision_checkpoints/,
    );
    expect(await completed()).toContain(CHAINS_MIGRATION);
    expect(await db('decision_checkpoints').count({ n: '*' })).toEqual([{ n: '3' }]);
  });
});

describe('the gateway', () => {
  it('signs the chain head every audit.checkpoint_interval_s with the configured key, made as the README says', async () => {
    const keyFile = path.join(scratch, 'gateway-checkpoint.pem');
    const publicFile = path.join(scratch, 'gateway-checkpoint.pub.pem');
    await execFileAsync('openssl', ['genpkey', '-algorithm', 'ed25519', '-out', keyFile]);
    await execFileAsync('openssl', ['pkey', '-in', keyFile, '-pubout', '-out', publicFile]);
    const h = await startHarness({ audit: { checkpoint_interval_s: 1, checkpoint_key_file: keyFile } }, { database });
    try {
      await seedDirectory(db);
      const alice = await h.tokens.sign('alice|sub');
      for (let i = 0; i < 3; i++) expect((await h.request('/orgs/acme', { token: alice })).status).toBe(200);
      await waitFor(async () => Number((await db('decision_checkpoints').max({ seq: 'seq' }).first())?.seq ?? 0) >= 3, {
        timeoutMs: 15_000,
        what: 'a checkpoint covering the three decisions',
      });
    } finally {
      await h.close();
    }
    const run = await verify('--public-key', publicFile);
    expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
    expect(run.stdout).toMatch(/signed checkpoints? holds?/);
  });
});
