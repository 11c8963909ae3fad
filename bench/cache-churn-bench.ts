// `npm run bench:cache`: the subject and facts caches' hit rate while other services keep
// writing the directory, on rows no cached entry concerns. Each phase starts with cold caches
// and its own change listener, asks for every caller's subject and one project's facts a
// fixed number of times at a fixed rate, and meanwhile updates unrelated users and projects
// at a fixed rate (each write its own notification). Writes its section of BENCHMARKS.md.
import pino from 'pino';
import { organizationOf, seedBenchDirectory, type DirectorySize } from './bench-directory';
import { arg, describeMachine, log, prepareEnvironment, writeBenchmarkSection, type BenchEnvironment } from './bench-environment';
import { percentile } from './load';
import { CachedFactsLoader } from '../src/directory/cached-facts-loader';
import { CachedSubjectLoader } from '../src/directory/cached-subject-loader';
import { DirectoryChangeListener } from '../src/directory/change-listener';
import type { CacheStats } from '../src/directory/directory-cache';
import { PgFactsLoader } from '../src/directory/pg-facts-loader';
import { PgSubjectLoader } from '../src/directory/pg-subject-loader';

interface Workload {
  size: DirectorySize;
  /** Users 1..callers make the requests; every other user and organization is only written. */
  callers: number;
  /** How often each caller asks (so at best 1 - 1/rounds of the lookups are hits). */
  rounds: number;
  lookupsPerS: number;
  concurrency: number;
}

interface PhaseResult {
  writesPerS: number;
  notifications: number;
  seconds: number;
  subjects: CacheStats;
  facts: CacheStats;
  /** Durations of the reads that went to PostgreSQL (the window a change can land in), sorted. */
  readsMs: number[];
}

const sleepUntil = (at: number) => new Promise((resolve) => setTimeout(resolve, Math.max(0, at - performance.now())));

async function runPhase(env: BenchEnvironment, workload: Workload, writesPerS: number): Promise<PhaseResult> {
  const { size, callers, rounds, lookupsPerS, concurrency } = workload;
  const listener = new DirectoryChangeListener({ url: env.databaseUrl, logger: pino({ level: 'silent' }) });
  const readsMs: number[] = [];
  const timed = async <T>(read: Promise<T>): Promise<T> => {
    const started = performance.now();
    const value = await read;
    readsMs.push(performance.now() - started);
    return value;
  };
  const pgSubjects = new PgSubjectLoader(env.db);
  const pgFacts = new PgFactsLoader(env.db);
  const options = { maxEntries: 10_000, ttlMs: 60_000 };
  const subjects = new CachedSubjectLoader({ load: (sub) => timed(pgSubjects.load(sub)) }, listener, options);
  const facts = new CachedFactsLoader({ load: (resource, action) => timed(pgFacts.load(resource, action)) }, listener, options);
  listener.subscribe(subjects);
  listener.subscribe(facts);
  await listener.start();
  if (!listener.live) throw new Error('the change listener did not connect');

  // Every caller once per round, in a shuffled order, at a fixed rate.
  const order: number[] = [];
  for (let round = 0; round < rounds; round += 1) {
    const callersOfRound = Array.from({ length: callers }, (_, i) => i + 1);
    for (let i = callersOfRound.length - 1; i > 0; i -= 1) {
      const j = Math.floor(Math.random() * (i + 1));
      [callersOfRound[i], callersOfRound[j]] = [callersOfRound[j]!, callersOfRound[i]!];
    }
    order.push(...callersOfRound);
  }
  const started = performance.now();
  const notificationsBefore = listener.stats().notifications;
  let next = 0;
  const lookups = Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < order.length) {
        const n = next++;
        await sleepUntil(started + (n * 1000) / lookupsPerS);
        const user = order[n]!;
        await subjects.load(`user-${user}`);
        await facts.load(
          { type: 'project', org: `org-${organizationOf(size, user, 0)}`, project: `project-${(user % size.projectsPerOrganization) + 1}` },
          'project:read',
        );
      }
    }),
  );

  // Unrelated writes: display names of users who never call, names of projects in
  // organizations none of the callers belongs to. One statement, so one notification, each.
  // Several writers, so that one slow commit does not hold the rate down.
  let writing = writesPerS > 0;
  let nextWrite = 0;
  const firstQuietOrganization = callers * size.membershipsPerUser + 1;
  const writes = Promise.all(
    Array.from({ length: writesPerS > 0 ? 4 : 0 }, async () => {
      while (writing) {
        const n = nextWrite++;
        await sleepUntil(started + (n * 1000) / writesPerS);
        if (!writing) break;
        if (n % 2 === 0) {
          const user = callers + 1 + (n % (size.users - callers));
          await env
            .db('users')
            .where({ subject: `user-${user}` })
            .update({ display_name: `User ${user} (${n})` });
        } else {
          const org = firstQuietOrganization + (n % (size.organizations - firstQuietOrganization + 1));
          await env.db.raw(
            "update projects set name = 'Project ' || ? where organization_id = md5('o' || ?)::uuid and slug = 'project-1'",
            [n, org],
          );
        }
      }
    }),
  );
  await lookups;
  const seconds = (performance.now() - started) / 1000;
  writing = false;
  await writes;
  const result: PhaseResult = {
    writesPerS,
    notifications: listener.stats().notifications - notificationsBefore,
    seconds,
    subjects: subjects.cacheStats(),
    facts: facts.cacheStats(),
    readsMs: readsMs.sort((a, b) => a - b),
  };
  await listener.close();
  return result;
}

const rate = (stats: CacheStats) => `${((100 * stats.hits) / (stats.hits + stats.misses)).toFixed(1)} %`;

async function main(): Promise<void> {
  const workload: Workload = {
    size: { users: 20_000, organizations: 4_000, membershipsPerUser: 3, projectsPerOrganization: 10, teamsPerOrganization: 2 },
    callers: arg('callers', 1_000),
    rounds: arg('rounds', 20),
    lookupsPerS: arg('lookups-per-s', 2_000),
    concurrency: 32,
  };
  if (workload.callers * workload.size.membershipsPerUser >= workload.size.organizations)
    throw new Error('--callers leaves no organization to write to');
  const writeRates = [0, arg('writes-per-s', 200), 5 * arg('writes-per-s', 200)];
  const env = await prepareEnvironment('cache');
  await seedBenchDirectory(env.db, workload.size, log);
  const phases: PhaseResult[] = [];
  for (const writesPerS of writeRates) {
    log(`phase: ${writesPerS} unrelated writes/s`);
    const phase = await runPhase(env, workload, writesPerS);
    log(
      `  subjects ${rate(phase.subjects)}, facts ${rate(phase.facts)} hits; ${phase.notifications} notifications in ${phase.seconds.toFixed(1)} s`,
    );
    phases.push(phase);
  }
  const { size, callers, rounds, lookupsPerS } = workload;
  const lines = [
    '## Cache hit rate under directory writes (`npm run bench:cache`)',
    '',
    ...(await describeMachine(env.db)),
    `- directory: ${size.users.toLocaleString('en')} users, ${size.organizations.toLocaleString('en')} organizations (${size.membershipsPerUser} per user), ${size.projectsPerOrganization} projects each`,
    `- lookups: ${callers.toLocaleString('en')} callers, each asking ${rounds} times (every caller once per round, shuffled) for its subject and the facts of one project, ${lookupsPerS.toLocaleString('en')} lookups/s, ${workload.concurrency} in flight at most; caches start cold, so at best ${(100 * (1 - 1 / rounds)).toFixed(1)} % are hits`,
    '- writes: meanwhile, at a fixed rate from 4 connections, `UPDATE`s of users who never call and of projects in organizations no caller belongs to, one statement (so one notification) each; the caches hear them through the real change listener',
    '',
    '| unrelated writes/s | notifications heard | subject hit rate | facts hit rate | directory reads | read p50 ms | read p99 ms |',
    '|---|---|---|---|---|---|---|',
    ...phases.map(
      (phase) =>
        `| ${phase.writesPerS} | ${phase.notifications} in ${phase.seconds.toFixed(1)} s | ${rate(phase.subjects)} | ${rate(phase.facts)} | ${phase.readsMs.length} | ${percentile(phase.readsMs, 0.5).toFixed(2)} | ${percentile(phase.readsMs, 0.99).toFixed(2)} |`,
    ),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  await writeBenchmarkSection('bench:cache', lines);
  await env.close();
}

main().catch((error: unknown) => {
  log(`failed: ${(error as Error).stack ?? String(error)}`);
  process.exit(1);
});
