// The migration to the partitioned, hash-chained decision log, on a database that already has
// decision records: they are chained exactly as the application chains (verify passes), and
// rolling back gives the plain table with every record back. Then the migration to one chain
// per instance: the records from before stay a chain of their own that still verifies.
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Knex } from 'knex';
import { CheckpointSigner, checkpointText } from '../src/audit/chain/checkpoint-key';
import { LEGACY_CHAIN } from '../src/audit/chain/decision-chain';
import { verifyChain } from '../src/audit/chain/decision-chain-verifier';
import { verifyCheckpoints } from '../src/audit/chain/decision-checkpoint-verifier';
import { EXPORT_CSV_COLUMNS, type ExportRun } from '../src/audit/export/decision-export-file';
import { PgDecisionCheckpointStore } from '../src/audit/chain/pg-decision-checkpoint-store';
import { PgDecisionQueryStore } from '../src/audit/store/pg-decision-query-store';
import { createDatabase, migrateToLatest, migrationConfig } from '../src/db/database';
import { appendDecisions } from './support/audit-helpers';
import { requireBuild, runCli } from './support/cli-process';
import { createTestDatabase, type TestDatabase } from './support/test-database';

const CHAIN_MIGRATION = '20261128000010_decision_chain.js';

let database: TestDatabase;
let db: Knex;

beforeAll(async () => {
  database = await createTestDatabase({ empty: true });
  db = database.db;
});
afterAll(async () => database?.drop());

const completed = async () =>
  ((await db.migrate.list(migrationConfig())) as [{ name: string }[], unknown[]])[0].map((migration) => migration.name);

function legacyRow(n: number, time: string, overrides: Record<string, unknown> = {}) {
  return {
    id: `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`,
    time,
    request_id: `legacy-${n}`,
    subject: n % 2 ? 'alice|sub' : null,
    user_id: null,
    organization: 'acme',
    action: 'organization:delete',
    resource: JSON.stringify({ type: 'organization', org: 'acme' }),
    method: 'DELETE',
    path: '/orgs/acme',
    allow: false,
    status: 409,
    reasons: ["organization 'acme' still has 2 projects (api, web); delete them first"],
    policy_revision: 'sha256:legacy',
    eval_latency_us: 12,
    input: JSON.stringify({ z: [1, 2.5, { y: 'é', b: null }], a: { ключ: 'значение' }, n }),
    ...overrides,
  };
}

describe('migrating an existing decision log to the hash chain', () => {
  it('chains the records already written in time order, and verify agrees with the migration', async () => {
    while (!(await completed()).includes('20261128000002_decisions.js')) await db.migrate.up(migrationConfig());
    expect(await completed()).not.toContain(CHAIN_MIGRATION);
    await db('decisions').insert([
      legacyRow(3, '2026-10-05T10:00:00.123Z'),
      legacyRow(1, '2026-09-01T08:00:00Z', { input: null, subject: null, reasons: [] }),
      legacyRow(2, '2026-10-05T10:00:00.123Z', { allow: true, status: 200 }),
      legacyRow(4, '2026-11-20T23:59:59.999Z'),
    ]);

    await migrateToLatest(db);
    const { rows } = await db.raw<{ rows: { n: number }[] }>(
      `select count(*)::int as n from pg_partitioned_table where partrelid = 'decisions'::regclass`,
    );
    expect(rows).toEqual([{ n: 1 }]);
    const chained = await db<{ request_id: string; seq: string }>('decisions').select('request_id', 'seq').orderBy('seq');
    expect(chained).toEqual([
      { request_id: 'legacy-1', seq: '1' },
      { request_id: 'legacy-2', seq: '2' },
      { request_id: 'legacy-3', seq: '3' },
      { request_id: 'legacy-4', seq: '4' },
    ]);
    expect(await db('decision_chain_head').first('seq')).toEqual({ seq: '4' });
    expect(await verifyChain(new PgDecisionQueryStore(db))).toMatchObject({ ok: true, checked: 4 });
  });

  it('rolls back to the plain table with every record', async () => {
    while ((await completed()).includes(CHAIN_MIGRATION)) await db.migrate.down(migrationConfig());
    const { rows } = await db.raw<{ rows: { n: number }[] }>(`select count(*)::int as n from pg_partitioned_table`);
    expect(rows).toEqual([{ n: 0 }]);
    expect((await db<{ request_id: string }>('decisions').select('request_id').orderBy('request_id')).map((row) => row.request_id)).toEqual(
      ['legacy-1', 'legacy-2', 'legacy-3', 'legacy-4'],
    );
    await migrateToLatest(db);
    expect(await verifyChain(new PgDecisionQueryStore(db))).toMatchObject({ ok: true, checked: 4 });
  });

  it('keeps dry_run on a database that got that column before this migration ran', async () => {
    const other = await createTestDatabase({ empty: true });
    try {
      const list = async () =>
        ((await other.db.migrate.list(migrationConfig())) as [{ name: string }[], unknown[]])[0].map((migration) => migration.name);
      while (!(await list()).includes('20261128000002_decisions.js')) await other.db.migrate.up(migrationConfig());
      // As if 20261128000030_decision_dry_run.js had been applied first (migrations merged out of order).
      await other.db.raw('alter table decisions add column dry_run boolean not null default false');
      await other.db('portcullis_migrations').insert({ name: '20261128000030_decision_dry_run.js', batch: 2, migration_time: new Date() });
      await other.db('decisions').insert([legacyRow(1, '2026-10-01T00:00:00Z', { dry_run: true }), legacyRow(2, '2026-10-02T00:00:00Z')]);

      await migrateToLatest(other.db);
      expect(await other.db('decisions').select('request_id', 'dry_run').orderBy('seq')).toEqual([
        { request_id: 'legacy-1', dry_run: true },
        { request_id: 'legacy-2', dry_run: false },
      ]);
      expect(await verifyChain(new PgDecisionQueryStore(other.db))).toMatchObject({ ok: true, checked: 2 });
    } finally {
      await other.drop();
    }
  });
});

describe('migrating a decision log across a daylight-saving change', () => {
  it('keeps all 20,000 records of a Europe/Berlin database, the fall-back hour included, and verify agrees', async () => {
    const berlin = await createTestDatabase({ empty: true });
    let other: Knex | undefined;
    try {
      const name = (await berlin.db.raw<{ rows: { name: string }[] }>('select current_database() as name')).rows[0]!.name;
      await berlin.db.raw(`alter database ${name} set timezone = 'Europe/Berlin'`);
      other = createDatabase({ url: berlin.url });
      const list = async () =>
        ((await other!.migrate.list(migrationConfig())) as [{ name: string }[], unknown[]])[0].map((migration) => migration.name);
      while (!(await list()).includes('20261128000002_decisions.js')) await other.migrate.up(migrationConfig());
      expect((await other.raw<{ rows: { TimeZone: string }[] }>('show timezone')).rows[0]!.TimeZone).toBe('Europe/Berlin');
      // 2026-10-25 01:00 UTC the clocks go back from 03:00 CEST to 02:00 CET: 00:00-02:00 UTC reads
      // 02:00-03:00 twice, so text order and time order differ within every copy batch.
      await other.raw(`
        insert into decisions (id, time, request_id, action, resource, method, path, allow, status, reasons)
        select ('00000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid,
               timestamptz '2026-10-25 00:00:00+00' + (n * interval '360 milliseconds'),
               'dst-' || n, 'project:read', '{"type":"project"}', 'GET', '/orgs/acme/projects', true, 200, '{}'
        from generate_series(1, 20000) as n`);

      await migrateToLatest(other);
      expect(await other('decisions').count({ n: '*' })).toEqual([{ n: '20000' }]);
      const { rows } = await other.raw<{ rows: { n: number; top: number }[] }>(
        `select count(distinct request_id)::int as n, max(seq)::int as top from decisions`,
      );
      expect(rows).toEqual([{ n: 20000, top: 20000 }]);
      // Chained in true time order.
      const { rows: misordered } = await other.raw<{ rows: { n: number }[] }>(
        `select count(*)::int as n from (select time, lag(time) over (order by seq) as previous from decisions) t where previous > time`,
      );
      expect(misordered).toEqual([{ n: 0 }]);
      expect(await verifyChain(new PgDecisionQueryStore(other))).toMatchObject({ ok: true, checked: 20000 });
    } finally {
      await other?.destroy();
      await berlin.drop();
    }
  });
});

describe('migrating to one chain per instance', () => {
  const CHAINS_MIGRATION = '20261130000030_decision_chains.js';

  it('still verifies an export written before chains had names, as the legacy chain', async () => {
    requireBuild();
    const older = await createTestDatabase({ empty: true });
    const scratch = await mkdtemp(path.join(os.tmpdir(), 'portcullis-legacy-export-'));
    try {
      const list = async () =>
        ((await older.db.migrate.list(migrationConfig())) as [{ name: string }[], unknown[]])[0].map((migration) => migration.name);
      while (!(await list()).includes('20261128000002_decisions.js')) await older.db.migrate.up(migrationConfig());
      await older.db('decisions').insert([1, 2, 3, 4].map((n) => legacyRow(n, `2026-11-0${n}T10:00:00Z`)));
      await migrateToLatest(older.db);
      for (const format of ['ndjson', 'csv'] as const) {
        const exported = await runCli(['decisions', 'export', '--since', '2026-11-01', '--format', format], { DATABASE_URL: older.url });
        expect({ code: exported.code, stderr: exported.stderr }).toEqual({ code: 0, stderr: '' });
        // The file as the version before chains wrote it: no chain field or column, one run in export_end.
        const before = exported.stdout
          .split('\n')
          .map((line) => {
            if (format === 'ndjson') {
              if (!line.startsWith('{"export_end"')) return line.replace('{"chain": "legacy", ', '{');
              const { export_end: end } = JSON.parse(line) as { export_end: { records: number; chains: ExportRun[]; exported_at: string } };
              const { chain: _legacy, ...run } = end.chains[0]!;
              return JSON.stringify({ export_end: { ...run, exported_at: end.exported_at } });
            }
            if (line.startsWith('chain,')) return line.slice('chain,'.length);
            if (line.startsWith('legacy,')) return line.slice('legacy,'.length);
            if (!line.startsWith(',')) return line;
            const end = JSON.parse(JSON.parse(`"${line.replace(/^,+"/, '').replace(/"$/, '').replace(/""/g, '\\"')}"`) as string) as {
              records: number;
              chains: ExportRun[];
              exported_at: string;
            };
            const { chain: _legacy, ...run } = end.chains[0]!;
            return `${','.repeat(EXPORT_CSV_COLUMNS.length - 2)}"${JSON.stringify({ ...run, exported_at: end.exported_at }).replace(/"/g, '""')}"`;
          })
          .join('\n');
        expect(before).not.toContain('"chain"');
        const file = path.join(scratch, `before.${format}`);
        await writeFile(file, before);
        const verified = await runCli(['decisions', 'verify', '--file', file]);
        expect({ code: verified.code, stderr: verified.stderr }).toEqual({ code: 0, stderr: '' });
        expect(verified.stdout).toMatch(
          new RegExp(`^verified 4 decision records in before\\.${format} \\(${format}, seq 1 to 4, head hash [0-9a-f]{64}\\)`),
        );
        await writeFile(file, before.replace('legacy-2', 'forged-2'));
        expect((await runCli(['decisions', 'verify', '--file', file])).code).toBe(1);
      }
    } finally {
      await rm(scratch, { recursive: true, force: true });
      await older.drop();
    }
  });

  it('keeps the records from before as the legacy chain, signed as they were; instances chain apart; a rollback joins them into one chain', async () => {
    const older = await createTestDatabase({ empty: true });
    const other = older.db;
    try {
      const list = async () =>
        ((await other.migrate.list(migrationConfig())) as [{ name: string }[], unknown[]])[0].map((migration) => migration.name);
      while (!(await list()).includes('20261128000002_decisions.js')) await other.migrate.up(migrationConfig());
      await other('decisions').insert([1, 2, 3].map((n) => legacyRow(n, `2026-11-0${n}T10:00:00Z`)));
      while (!(await list()).includes('20261130000020_console_indexes.js')) await other.migrate.up(migrationConfig());
      // A checkpoint of the shared chain, signed (v1 text) before chains had names.
      const pair = generateKeyPairSync('ed25519');
      const signer = new CheckpointSigner(pair.privateKey);
      const head = (await other<{ seq: string; hash: string }>('decision_chain_head').first('seq', 'hash'))!;
      const claim = { seq: Number(head.seq), hash: head.hash, signedAt: new Date('2026-11-04T00:00:00Z'), prevSeq: null };
      expect(checkpointText({ chain: LEGACY_CHAIN, ...claim })).toMatch(/^portcullis-checkpoint\/v1\n3\n/);
      await other('decision_checkpoints').insert({
        seq: claim.seq,
        hash: claim.hash,
        signed_at: claim.signedAt,
        prev_seq: null,
        key_id: signer.keyId,
        signature: signer.sign(checkpointText({ chain: LEGACY_CHAIN, ...claim })),
      });

      await migrateToLatest(other);
      await appendDecisions(other, 4, 10, () => ({}), 'gw-1');
      await appendDecisions(other, 2, 20, () => ({}), 'gw-2');
      await appendDecisions(other, 2, 30, () => ({}), 'gw-1');
      const result = await verifyChain(new PgDecisionQueryStore(other));
      expect(result.ok).toBe(true);
      expect(result.chains.map((chain) => [chain.chain, chain.checked, chain.head.seq])).toEqual([
        ['gw-1', 6, 6],
        ['gw-2', 2, 2],
        [LEGACY_CHAIN, 3, 3],
      ]);
      expect(
        await verifyCheckpoints(new PgDecisionCheckpointStore(other), pair.publicKey, { chain: LEGACY_CHAIN, head: claim }),
      ).toMatchObject({ ok: true, checkpoints: 1 });
      // The log's order goes on after the legacy records.
      expect((await other('decisions').orderBy('seq').pluck('seq')).map(Number)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);

      // Back to one chain: the legacy records keep their hashes (and checkpoint), the others follow in seq order.
      while ((await list()).includes(CHAINS_MIGRATION)) await other.migrate.down(migrationConfig());
      expect(await other('decision_chain_head').first('seq')).toEqual({ seq: '11' });
      expect(await other('decision_checkpoints').count({ n: '*' })).toEqual([{ n: '1' }]);
      await migrateToLatest(other);
      expect(await verifyChain(new PgDecisionQueryStore(other))).toMatchObject({
        ok: true,
        checked: 11,
        chains: [{ chain: LEGACY_CHAIN }],
      });
      expect(
        await verifyCheckpoints(new PgDecisionCheckpointStore(other), pair.publicKey, {
          chain: LEGACY_CHAIN,
          head: { seq: 11, hash: (await other<{ hash: string }>('decision_chain_head').first('hash'))!.hash },
        }),
      ).toMatchObject({ ok: true });
    } finally {
      await older.drop();
    }
  });
});
