// The audit trail's figures (issue 5), measured against a real PostgreSQL: the sustained rate
// at which decisions go through the batching recorder into the hash chain (one gateway, and two
// sharing the chain), and how long `verify` takes over a million chained records.
//   npm run bench:audit                          embedded PostgreSQL in a scratch folder
//   BENCH_DATABASE_URL=postgres://… npm run bench:audit   a server of your own (a scratch database is created in it)
//   BENCH_RECORDS=200000 BENCH_VERIFY_RECORDS=1000000     sizes
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Knex } from 'knex';
import { BatchingDecisionRecorder } from '../src/audit/batching-decision-recorder';
import { prepareDecision } from '../src/audit/decision-chain';
import { verifyChain } from '../src/audit/decision-chain-verifier';
import type { DecisionRecord } from '../src/audit/decision-record';
import { PgDecisionQueryStore } from '../src/audit/pg-decision-query-store';
import { PgDecisionStore } from '../src/audit/pg-decision-store';
import { createDatabase, migrateToLatest } from '../src/db/database';
import { EmbeddedDatabase } from '../src/db/embedded-database';

const WRITE_RECORDS = Number(process.env.BENCH_RECORDS ?? 200_000);
const VERIFY_RECORDS = Number(process.env.BENCH_VERIFY_RECORDS ?? 1_000_000);
const log = (line: string) => process.stdout.write(`${line}\n`);
const fmt = (n: number) => Math.round(n).toLocaleString('en');

/** A decision shaped like the gateway's: the full policy input of an org-scoped project read. */
function decision(n: number, time = new Date()): DecisionRecord {
  const userId = randomUUID();
  const allow = n % 4 !== 0;
  return {
    id: randomUUID(),
    time,
    requestId: randomUUID(),
    subject: `user-${n % 5000}`,
    userId,
    organization: `org-${n % 300}`,
    action: allow ? 'project:read' : 'project:delete',
    resource: { type: 'project', org: `org-${n % 300}`, project: `project-${n % 7}` },
    method: allow ? 'GET' : 'DELETE',
    path: `/orgs/org-${n % 300}/projects/project-${n % 7}`,
    allow,
    status: allow ? 200 : 403,
    reasons: allow ? [`granted by permission 'project:read' in organization 'org-${n % 300}'`] : [`missing permission 'project:delete' in organization 'org-${n % 300}' (your roles there: default)`],
    policyRevision: 'sha256:3f6b1c0e9a7d2b44',
    evalLatencyUs: 20 + (n % 40),
    input: {
      request: { id: randomUUID(), method: allow ? 'GET' : 'DELETE', path: `/orgs/org-${n % 300}/projects/project-${n % 7}`, route: '/orgs/{org}/projects/{project}' },
      action: allow ? 'project:read' : 'project:delete',
      resource: { type: 'project', org: `org-${n % 300}`, project: `project-${n % 7}` },
      subject: {
        id: userId,
        sub: `user-${n % 5000}`,
        email: `user-${n % 5000}@example.com`,
        memberships: {
          [`org-${n % 300}`]: { role: 'default', teams: ['team-1'], roles: ['default', 'deployer'], permissions: ['member:read', 'organization:read', 'pipeline:read', 'pipeline:run', 'project:create', 'project:read', 'team:read'] },
          [`org-${(n + 1) % 300}`]: { role: 'organization-admin', teams: [], roles: ['organization-admin'], permissions: ['*'] },
        },
      },
      facts: { organization: { exists: true }, project: { exists: true, in_organization: true } },
    },
  };
}

async function sustainedWrite(db: Knex, gateways: number, total: number): Promise<number> {
  const recorders = Array.from({ length: gateways }, () => new BatchingDecisionRecorder(new PgDecisionStore(db), { onError: (error) => log(`  error: ${error.message}`) }));
  const started = performance.now();
  await Promise.all(
    recorders.map(async (recorder, g) => {
      // As fast as the recorder takes them, with a bounded backlog (as traffic would see it).
      for (let n = g; n < total; n += gateways) {
        recorder.record(decision(n));
        if (recorder.memoryBacklog >= 20_000) await new Promise((resolve) => setTimeout(resolve, 5));
      }
      await recorder.close();
    }),
  );
  return (total / (performance.now() - started)) * 1000;
}

async function seedChain(db: Knex, total: number): Promise<number> {
  const store = new PgDecisionStore(db);
  const started = performance.now();
  const base = Date.now() - total;
  const batch = 10_000;
  for (let from = 0; from < total; from += batch) {
    const records = Array.from({ length: Math.min(batch, total - from) }, (_, i) => prepareDecision(decision(from + i, new Date(base + from + i))));
    await store.append(records);
    if ((from / batch) % 10 === 9) log(`  seeded ${fmt(from + batch)} records…`);
  }
  return (performance.now() - started) / 1000;
}

async function main(): Promise<void> {
  const scratch = await mkdtemp(path.join(os.tmpdir(), 'portcullis-audit-bench-'));
  let embedded: EmbeddedDatabase | undefined;
  const serverUrl = process.env.BENCH_DATABASE_URL ?? (embedded = await EmbeddedDatabase.create({ dataDir: path.join(scratch, 'pgdata') })).url;
  const name = `portcullis_audit_bench_${randomBytes(4).toString('hex')}`;
  const server = createDatabase({ url: serverUrl });
  await server.raw(`create database ${name}`);
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  const db = createDatabase({ url: url.toString(), poolMax: 10, acquireTimeoutMs: 30_000 });
  try {
    await migrateToLatest(db);
    const { rows } = await db.raw<{ rows: { server_version: string }[] }>('show server_version');
    log(`audit bench: PostgreSQL ${rows[0]!.server_version}, Node ${process.version}, ${os.cpus().length} cores`);

    const one = await sustainedWrite(db, 1, WRITE_RECORDS);
    log(`sustained write rate, one gateway: ${fmt(one)} records/s (${fmt(WRITE_RECORDS)} records through BatchingDecisionRecorder → PgDecisionStore, batches of 500, hash chain)`);
    const two = await sustainedWrite(db, 2, WRITE_RECORDS);
    log(`sustained write rate, two gateways sharing the chain: ${fmt(two)} records/s in total`);
    const written = Number((await db('decision_chain_head').first('seq')).seq);

    const seedSeconds = await seedChain(db, VERIFY_RECORDS - written);
    log(`seeded ${fmt(VERIFY_RECORDS - written)} more chained records in ${seedSeconds.toFixed(1)} s (batches of 10,000)`);
    await db.raw('vacuum analyze decisions');

    const started = performance.now();
    const result = await verifyChain(new PgDecisionQueryStore(db), { onProgress: (checked, total) => checked % 200_000 === 0 && log(`  verified ${fmt(checked)} of ${fmt(total)}…`) });
    const seconds = (performance.now() - started) / 1000;
    if (!result.ok) throw new Error(`verify failed: ${JSON.stringify(result.broken)}`);
    log(`verify: ${fmt(result.checked)} records in ${seconds.toFixed(1)} s (${fmt(result.checked / seconds)} records/s)`);
  } finally {
    await db.destroy();
    await server.raw(`drop database if exists ${name} with (force)`);
    await server.destroy();
    await embedded?.stop();
    await rm(scratch, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`audit bench failed: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exitCode = 1;
});
