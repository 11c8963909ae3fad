// `npm run bench:scale`: a large directory (100,000 users, 10,000 organizations, 1,000,000
// memberships, 1,000,000 projects, and teams with roles) seeded with set-based SQL, then the
// uncached subject load (PgSubjectLoader, one SQL round trip) for random users, one at a time
// and 16 at a time; and the facts load behind R5/R7 for comparison.
import { organizationOf, seedBenchDirectory, type DirectorySize } from './bench-directory';
import { arg, describeMachine, log, prepareEnvironment, writeBenchmarkSection } from './bench-environment';
import { percentile } from './load';
import { PgFactsLoader } from '../src/directory/pg-facts-loader';
import { PgSubjectLoader } from '../src/directory/pg-subject-loader';

async function timed(count: number, concurrency: number, work: (i: number) => Promise<unknown>): Promise<number[]> {
  const times: number[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) {
        const i = next++;
        const started = process.hrtime.bigint();
        await work(i);
        times.push(Number(process.hrtime.bigint() - started) / 1e6);
      }
    }),
  );
  return times.sort((a, b) => a - b);
}

const row = (label: string, times: number[]) =>
  `| ${label} | ${times.length} | ${percentile(times, 0.5).toFixed(2)} | ${percentile(times, 0.99).toFixed(2)} | ${times[times.length - 1]!.toFixed(2)} |`;

async function main(): Promise<void> {
  const size: DirectorySize = {
    users: arg('users', 100_000),
    organizations: arg('organizations', 10_000),
    membershipsPerUser: arg('memberships-per-user', 10),
    projectsPerOrganization: arg('projects-per-organization', 100),
    teamsPerOrganization: arg('teams-per-organization', 5),
  };
  const samples = arg('samples', 5000);
  const env = await prepareEnvironment('scale');
  const seeding = Date.now();
  await seedBenchDirectory(env.db, size, log);
  const seedSeconds = (Date.now() - seeding) / 1000;
  const counts = (
    await env.db.raw<{ rows: Record<string, string>[] }>(`select
      (select count(*) from users) as users, (select count(*) from organizations) as organizations,
      (select count(*) from organization_members) as memberships, (select count(*) from projects) as projects,
      (select count(*) from teams) as teams, (select count(*) from team_members) as team_members`)
  ).rows[0]!;
  log(`seeded ${JSON.stringify(counts)} in ${seedSeconds.toFixed(1)} s`);

  const subjects = new PgSubjectLoader(env.db);
  const facts = new PgFactsLoader(env.db);
  // Random users, never the same twice in a row; nothing in front of PostgreSQL caches them.
  const userAt = (i: number) => ((i * 7_919 + 13) % size.users) + 1;
  const check = await subjects.load(`user-${userAt(0)}`);
  if (Object.keys(check.memberships).length !== size.membershipsPerUser)
    throw new Error('the subject does not have the seeded memberships');
  await timed(500, 1, (i) => subjects.load(`user-${userAt(i + samples)}`)); // connection and plan warm-up
  const sequential = await timed(samples, 1, (i) => subjects.load(`user-${userAt(i)}`));
  const concurrent = await timed(samples, 16, (i) => subjects.load(`user-${userAt(i + 2 * samples)}`));
  const projectFacts = await timed(samples, 1, (i) => {
    const user = userAt(i);
    return facts.load(
      { type: 'project', org: `org-${organizationOf(size, user, 1)}`, project: `project-${(i % size.projectsPerOrganization) + 1}` },
      'project:read',
    );
  });
  const deleteFacts = await timed(samples, 1, (i) =>
    facts.load({ type: 'organization', org: `org-${(i % size.organizations) + 1}` }, 'organization:delete'),
  );
  const p99 = percentile(sequential, 0.99);

  const lines = [
    '## Directory at scale (`npm run bench:scale`)',
    '',
    ...(await describeMachine(env.db)),
    `- data: ${Object.entries(counts)
      .map(([k, v]) => `${Number(v).toLocaleString('en')} ${k.replace('_', ' ')}`)
      .join(', ')}; ` +
      `each user in ${size.membershipsPerUser} organizations (admin of one, default role plus a team with an organization role in the others); seeded in ${seedSeconds.toFixed(0)} s with generate_series`,
    `- ${samples.toLocaleString('en')} loads each, random users, straight from PostgreSQL (no gateway cache); PostgreSQL's own buffer cache is warm`,
    '',
    '| load | n | p50 ms | p99 ms | max ms |',
    '|---|---|---|---|---|',
    row('subject (one at a time)', sequential),
    row('subject (16 in flight)', concurrent),
    row('facts of a project by slug', projectFacts),
    row('facts for organization:delete (100 projects to count)', deleteFacts),
    '',
    `Target: uncached subject load p99 < 5 ms at this scale: ${p99.toFixed(2)} ms, ${p99 < 5 ? 'met' : '**missed**'}.`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  await writeBenchmarkSection('bench:scale', lines);
  await env.close();
}

main().catch((error: unknown) => {
  log(`failed: ${(error as Error).stack ?? String(error)}`);
  process.exit(1);
});
