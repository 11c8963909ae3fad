// The audit trail's figures (issue 5), measured against a real PostgreSQL: the sustained rate
// at which decisions go through the batching recorder into the hash chain (one gateway, and two
// sharing the chain), and how long `verify` takes over a million chained records. Writes its
// section of BENCHMARKS.md. Sizes: BENCH_RECORDS (default 200,000), BENCH_VERIFY_RECORDS (1,000,000).
import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import { BatchingDecisionRecorder } from '../src/audit/batching-decision-recorder';
import { prepareDecision } from '../src/audit/decision-chain';
import { verifyChain } from '../src/audit/decision-chain-verifier';
import type { DecisionRecord } from '../src/audit/decision-record';
import { PgDecisionQueryStore } from '../src/audit/pg-decision-query-store';
import { PgDecisionStore } from '../src/audit/pg-decision-store';
import { describeMachine, log, prepareEnvironment, writeBenchmarkSection } from './bench-environment';

const WRITE_RECORDS = Number(process.env.BENCH_RECORDS ?? 200_000);
const VERIFY_RECORDS = Number(process.env.BENCH_VERIFY_RECORDS ?? 1_000_000);
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
    reasons: allow
      ? [`granted by permission 'project:read' in organization 'org-${n % 300}'`]
      : [`missing permission 'project:delete' in organization 'org-${n % 300}' (your roles there: default)`],
    policyRevision: 'sha256:3f6b1c0e9a7d2b44',
    evalLatencyUs: 20 + (n % 40),
    input: {
      request: {
        id: randomUUID(),
        method: allow ? 'GET' : 'DELETE',
        path: `/orgs/org-${n % 300}/projects/project-${n % 7}`,
        route: '/orgs/{org}/projects/{project}',
      },
      action: allow ? 'project:read' : 'project:delete',
      resource: { type: 'project', org: `org-${n % 300}`, project: `project-${n % 7}` },
      subject: {
        id: userId,
        sub: `user-${n % 5000}`,
        email: `user-${n % 5000}@example.com`,
        memberships: {
          [`org-${n % 300}`]: {
            role: 'default',
            teams: ['team-1'],
            roles: ['default', 'deployer'],
            permissions: [
              'member:read',
              'organization:read',
              'pipeline:read',
              'pipeline:run',
              'project:create',
              'project:read',
              'team:read',
            ],
          },
          [`org-${(n + 1) % 300}`]: { role: 'organization-admin', teams: [], roles: ['organization-admin'], permissions: ['*'] },
        },
      },
      facts: { organization: { exists: true }, project: { exists: true, in_organization: true } },
    },
  };
}

async function sustainedWrite(db: Knex, gateways: number, total: number): Promise<number> {
  const recorders = Array.from(
    { length: gateways },
    () => new BatchingDecisionRecorder(new PgDecisionStore(db), { onError: (error) => log(`  error: ${error.message}`) }),
  );
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
    const records = Array.from({ length: Math.min(batch, total - from) }, (_, i) =>
      prepareDecision(decision(from + i, new Date(base + from + i))),
    );
    await store.append(records);
    if ((from / batch) % 10 === 9) log(`  seeded ${fmt(from + batch)} records…`);
  }
  return (performance.now() - started) / 1000;
}

async function main(): Promise<void> {
  const env = await prepareEnvironment('audit');
  const { db } = env;
  try {
    const one = await sustainedWrite(db, 1, WRITE_RECORDS);
    log(`sustained write rate, one gateway: ${fmt(one)} records/s`);
    const two = await sustainedWrite(db, 2, WRITE_RECORDS);
    log(`sustained write rate, two gateways sharing the chain: ${fmt(two)} records/s`);
    const written = Number((await db('decision_chain_head').first('seq')).seq);

    const seedSeconds = await seedChain(db, VERIFY_RECORDS - written);
    log(`seeded ${fmt(VERIFY_RECORDS - written)} more chained records in ${seedSeconds.toFixed(1)} s`);
    await db.raw('vacuum analyze decisions');
    const { rows } = await db.raw<{ rows: { size: string }[] }>(
      `select pg_size_pretty(sum(pg_total_relation_size(inhrelid))) as size from pg_inherits where inhparent = 'decisions'::regclass`,
    );

    const runs: number[] = [];
    let checked = 0;
    for (let run = 0; run < 3; run++) {
      const started = performance.now();
      const result = await verifyChain(new PgDecisionQueryStore(db));
      runs.push((performance.now() - started) / 1000);
      if (!result.ok) throw new Error(`verify failed: ${JSON.stringify(result.broken)}`);
      checked = result.checked;
      log(`verify: ${fmt(checked)} records in ${runs[run]!.toFixed(1)} s`);
    }
    const median = [...runs].sort((a, b) => a - b)[1]!;

    await writeBenchmarkSection('bench:audit', [
      '## Audit trail (`npm run bench:audit`)',
      '',
      ...(await describeMachine(db)).map((line) =>
        line.replace(', shared with the load generator, the upstream and PostgreSQL', ', shared by the benchmark and PostgreSQL'),
      ),
      `- records: shaped like the gateway's (an org-scoped project read or delete with its full policy input, ${fmt(prepareDecision(decision(1)).content.length)} bytes of canonical JSON each); decisions table ${rows[0]?.size ?? '?'} with its indexes at ${fmt(checked)} records`,
      '',
      '| measure | figure |',
      '|---|---|',
      `| sustained write rate, one gateway (BatchingDecisionRecorder → PgDecisionStore, batches of 500, hash chain, ${fmt(WRITE_RECORDS)} records) | ${fmt(one)} records/s |`,
      `| sustained write rate, two gateways appending to the same chain | ${fmt(two)} records/s in total |`,
      `| \`verify\` over ${fmt(checked)} chained records (median of 3; runs: ${runs.map((s) => s.toFixed(1)).join(', ')} s) | ${median.toFixed(1)} s (${fmt(checked / median)} records/s) |`,
      '',
      `Seeding the chain to ${fmt(checked)} records through PgDecisionStore in batches of 10,000 took ${seedSeconds.toFixed(1)} s.`,
    ]);
  } finally {
    await env.close();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`audit bench failed: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exitCode = 1;
});
