// The audit trail's figures (issues 5 and 15), measured against a real PostgreSQL: the sustained
// rate at which decisions go through the batching recorder into the hash chains, for one instance
// and for three instances side by side (each its own chain and connections, the same records and
// total; and, for comparison, three sharing one chain as every instance did before), and how long
// `verify` takes over a million chained records. Writes its section of BENCHMARKS.md.
// Sizes: BENCH_RECORDS (default 200,000), BENCH_VERIFY_RECORDS (1,000,000).
import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import { createDatabase } from '../src/db/database';
import { BatchingDecisionRecorder } from '../src/audit/recording/batching-decision-recorder';
import { prepareDecision } from '../src/audit/chain/decision-chain';
import { verifyChain } from '../src/audit/chain/decision-chain-verifier';
import type { DecisionRecord } from '../src/audit/decision-record';
import { timeOrderedId } from '../src/base/time-ordered-id';
import { PgDecisionQueryStore } from '../src/audit/store/pg-decision-query-store';
import { PgDecisionStore } from '../src/audit/chain/pg-decision-store';
import { describeMachine, log, prepareEnvironment, writeBenchmarkSection, type BenchEnvironment } from './bench-environment';

const WRITE_RECORDS = Number(process.env.BENCH_RECORDS ?? 200_000);
const VERIFY_RECORDS = Number(process.env.BENCH_VERIFY_RECORDS ?? 1_000_000);
const fmt = (n: number) => Math.round(n).toLocaleString('en');

/**
 * A decision shaped like the gateway's: the full policy input of an org-scoped project read. Its
 * ids are time-ordered, as the gateway's are; `newId: randomUUID` gives random (v4) ones, for comparison.
 */
function decision(n: number, time = new Date(), newId: () => string = timeOrderedId): DecisionRecord {
  const userId = randomUUID();
  const allow = n % 4 !== 0;
  return {
    id: newId(),
    time,
    requestId: newId(),
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
        id: newId(),
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

interface WriteRate {
  perSecond: number;
  /** PostgreSQL's CPU time (all its processes) per record, from the first record until the last is committed. */
  postgresUs: number | undefined;
}

/**
 * Records/s of `instances` recorders writing `total` records between them, each over a pool of
 * its own (as separate gateways have), to its own chain or, with `sharedChain`, all to one.
 */
async function sustainedWrite(
  env: BenchEnvironment,
  instances: number,
  total: number,
  run: string,
  options: { sharedChain?: boolean; randomIds?: boolean } = {},
): Promise<WriteRate> {
  const url = env.databaseUrl;
  const sharedChain = options.sharedChain ?? false;
  const newId = options.randomIds ? randomUUID : timeOrderedId;
  const pools = Array.from({ length: instances }, () => createDatabase({ url, poolMax: 4 }));
  const recorders = pools.map(
    (pool, i) =>
      new BatchingDecisionRecorder(new PgDecisionStore(pool, sharedChain ? `${run}-shared` : `${run}-${i + 1}`), {
        onError: (error) => log(`  error: ${error.message}`),
      }),
  );
  try {
    const started = performance.now();
    const postgresBefore = env.postgresCpuUs();
    await Promise.all(
      recorders.map(async (recorder, g) => {
        // As fast as the recorder takes them, with a bounded backlog (as traffic would see it).
        for (let n = g; n < total; n += instances) {
          recorder.record(decision(n, new Date(), newId));
          if (recorder.memoryBacklog >= 20_000) await new Promise((resolve) => setTimeout(resolve, 5));
        }
        await recorder.close();
      }),
    );
    const perSecond = (total / (performance.now() - started)) * 1000;
    const postgresAfter = env.postgresCpuUs();
    const postgresUs = postgresBefore === undefined || postgresAfter === undefined ? undefined : (postgresAfter - postgresBefore) / total;
    return { perSecond, postgresUs };
  } finally {
    await Promise.all(pools.map((pool) => pool.destroy()));
  }
}

async function seedChain(db: Knex, total: number): Promise<number> {
  const store = new PgDecisionStore(db, 'seed');
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
    // Alternating, twice each, so drift in the machine's load falls on every measure alike.
    const measures = { one: [] as WriteRate[], three: [] as WriteRate[], shared: [] as WriteRate[], random: [] as WriteRate[] };
    const measure = async (into: WriteRate[], label: string, write: Promise<WriteRate>) => {
      const rate = await write;
      into.push(rate);
      log(`sustained write rate, ${label}: ${fmt(rate.perSecond)} records/s, PostgreSQL ${postgresText(rate)} per record`);
    };
    for (let round = 0; round < 2; round++) {
      await measure(measures.one, 'one instance', sustainedWrite(env, 1, WRITE_RECORDS, `one${round}`));
      await measure(measures.three, 'three instances, a chain each', sustainedWrite(env, 3, WRITE_RECORDS, `three${round}`));
      await measure(
        measures.shared,
        'three instances sharing one chain',
        sustainedWrite(env, 3, WRITE_RECORDS, `shared${round}`, { sharedChain: true }),
      );
      await measure(
        measures.random,
        'one instance, random ids',
        sustainedWrite(env, 1, WRITE_RECORDS, `random${round}`, { randomIds: true }),
      );
    }
    const rates = {
      one: measures.one.map((rate) => rate.perSecond),
      three: measures.three.map((rate) => rate.perSecond),
      shared: measures.shared.map((rate) => rate.perSecond),
    };
    const best = (values: number[]) => Math.max(...values);
    const [one, three, shared] = [best(rates.one), best(rates.three), best(rates.shared)];
    const postgresOf = (rates: WriteRate[]) => rates.map(postgresText).join(', ');
    const { rows: heads } = await db.raw<{ rows: { written: string }[] }>(
      'select coalesce(sum(seq), 0) as written from decision_chain_head',
    );
    const written = Number(heads[0]!.written);

    const seeded = Math.max(0, VERIFY_RECORDS - written);
    const seedSeconds = await seedChain(db, seeded);
    log(`seeded ${fmt(seeded)} more chained records in ${seedSeconds.toFixed(1)} s`);
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
      `| sustained write rate, **one instance** (BatchingDecisionRecorder → PgDecisionStore, batches of 500, its own chain, ${fmt(WRITE_RECORDS)} records) | ${fmt(one)} records/s |`,
      `| sustained write rate, **three instances** at once, each its own chain and connections (the same ${fmt(WRITE_RECORDS)} records between them) | ${fmt(three)} records/s in total (${(three / one).toFixed(2)}× one) |`,
      `| for comparison: three instances appending to one shared chain under one lock (every instance did before issue 15) | ${fmt(shared)} records/s in total (${(shared / one).toFixed(2)}× one) |`,
      `| PostgreSQL CPU per record, one instance (both runs) | ${postgresOf(measures.one)} |`,
      `| the same with random (v4) decision and request ids instead of time-ordered ones (both runs; ${measures.random.map((rate) => fmt(rate.perSecond)).join(', ')} records/s) | ${postgresOf(measures.random)} |`,
      `| \`verify\` over ${fmt(checked)} chained records (median of 3; runs: ${runs.map((s) => s.toFixed(1)).join(', ')} s) | ${median.toFixed(1)} s (${fmt(checked / median)} records/s) |`,
      '',
      `Write rates: the better of two alternating runs each (${rates.one.map(fmt).join(', ')} / ${rates.three.map(fmt).join(', ')} / ${rates.shared.map(fmt).join(', ')} records/s). ` +
        'The three instances are three recorders in this one Node.js process, each with its own connection pool: their hashing shares one core, ' +
        'and PostgreSQL the other, so on two cores this shows that three instances no longer lose throughput to one lock (compare the shared chain), not how far separate machines would scale.',
      ...(seeded > 0
        ? [
            '',
            `Seeding the chains to ${fmt(checked)} records through PgDecisionStore in batches of 10,000 took ${seedSeconds.toFixed(1)} s.`,
          ]
        : []),
    ]);
  } finally {
    await env.close();
  }
}

function postgresText(rate: WriteRate): string {
  return rate.postgresUs === undefined ? 'not measured' : `${rate.postgresUs.toFixed(0)} µs`;
}

main().catch((error: unknown) => {
  process.stderr.write(`audit bench failed: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exitCode = 1;
});
