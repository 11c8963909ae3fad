// The operator console on a big decision log (issue 14): seeds BENCH_RECORDS (default
// 1,000,000) decisions spread over the last 30 days with one set-based INSERT (generate_series;
// the rollup trigger counts them in the same statement), starts a gateway on that database,
// signs in, and times each view's first page as a browser fetches it (median of 5 after one
// cold fetch). Writes its section of BENCHMARKS.md.
import path from 'node:path';
import pino from 'pino';
import { Portcullis } from '../src/app';
import { addMonths, monthOf, PgDecisionPartitions } from '../src/audit/store/pg-decision-partitions';
import { parseConfig } from '../src/config/load-config';
import { seedBenchDirectory } from './bench-directory';
import { AUDIENCE, describeMachine, ISSUER, log, prepareEnvironment, writeBenchmarkSection } from './bench-environment';

const RECORDS = Number(process.env.BENCH_RECORDS ?? 1_000_000);
const TOKEN = 'bench-console-admin-token-0123456789';
const BUDGET_MS = 300;
const RUNS = 5;

async function main(): Promise<void> {
  const env = await prepareEnvironment('console');
  const { db } = env;
  try {
    await seedBenchDirectory(
      db,
      { users: 2000, organizations: 200, membershipsPerUser: 3, projectsPerOrganization: 5, teamsPerOrganization: 3 },
      log,
    );
    const now = new Date();
    const partitions = new PgDecisionPartitions(db);
    for (let month = monthOf(new Date(now.getTime() - 31 * 86_400_000)); month <= monthOf(now); month = addMonths(month, 1))
      await partitions.ensure(month);

    let started = Date.now();
    // Newest last: seq grows with time, as the gateway writes them. One record in four is a
    // denial, one in fifty a failure (503); subjects, organizations and actions vary.
    await db.raw(
      `insert into decisions (id, time, request_id, subject, user_id, organization, action, resource, method, path, allow, status, reasons,
                              policy_revision, eval_latency_us, input, seq, chain, chain_seq, prev_hash, hash, dry_run)
       select md5('d' || i)::uuid,
              now() - (interval '30 days') * (${RECORDS} - i)::float8 / ${RECORDS},
              md5('q' || i),
              'user-' || (i % 2000 + 1), md5('u' || (i % 2000 + 1))::uuid, 'org-' || (i % 200 + 1),
              (array['project:read','project:delete','organization:read','member:invite','pipeline:run'])[i % 5 + 1],
              jsonb_build_object('type', 'project', 'org', 'org-' || (i % 200 + 1)),
              case when i % 4 = 0 then 'DELETE' else 'GET' end,
              '/orgs/org-' || (i % 200 + 1) || '/projects/project-' || (i % 5 + 1),
              i % 4 <> 0,
              case when i % 50 = 0 then 503 when i % 4 = 0 then 403 else 200 end,
              case when i % 4 = 0 then array['missing permission ''project:delete'' in organization ''org-' || (i % 200 + 1) || ''''] else array[]::text[] end,
              case when i < ${RECORDS} * 0.6 then 'sha256:aaaa1111' when i < ${RECORDS} * 0.9 then 'sha256:bbbb2222' else 'sha256:cccc3333' end,
              20 + i % 400,
              jsonb_build_object('request', jsonb_build_object('method', 'GET', 'path', '/orgs/org-' || (i % 200 + 1), 'route', '/orgs/{org}/projects/{project}'),
                                 'action', 'project:read', 'subject', jsonb_build_object('sub', 'user-' || (i % 2000 + 1))),
              i, 'bench', i, md5('p' || i), md5('h' || i), false
       from generate_series(1, ${RECORDS}) i`,
    );
    await db.raw(`insert into decision_chain_head (chain, seq, hash) values ('bench', ${RECORDS}, md5('h' || ${RECORDS}))`);
    await db.raw(`select setval('decision_seq', ${RECORDS})`);
    log(`  seeded ${RECORDS.toLocaleString('en')} decisions in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    started = Date.now();
    await db.raw('vacuum analyze');
    log(`  vacuum analyze in ${((Date.now() - started) / 1000).toFixed(1)} s`);

    const config = parseConfig(
      {
        server: { host: '127.0.0.1', port: 0 },
        admin: { host: '127.0.0.1', port: 0, token: TOKEN },
        database: { url: env.databaseUrl },
        auth: { issuer: ISSUER, audience: AUDIENCE, jwks_file: env.jwksFile, algorithms: ['ES256'] },
        policy: { source: env.bundle },
        services: Object.fromEntries(
          ['organizations', 'projects', 'credentials', 'users'].map((name) => [name, { url: 'http://127.0.0.1:9' }]),
        ),
      },
      {},
      env.dir,
    );
    const gateway = await Portcullis.start(config, {
      logger: pino({ level: 'silent' }),
      stateDir: path.join(env.dir, 'state'),
      toolchain: { opaBin: env.opa },
    });
    try {
      const cookie = await signIn(gateway.adminUrl);
      const denied = (await db('decisions')
        .first('id')
        .where({ seq: 4 * Math.floor(RECORDS / 8) })) as { id: string };
      const views: [string, string][] = [
        ['overview', '/console/'],
        ['decisions (no filter)', '/console/decisions'],
        ['decisions, subject + denied, 7 d', '/console/decisions?since=7d&subject=user-5&outcome=denied'],
        ['decisions, org + action', '/console/decisions?org=org-17&action=project:delete'],
        ['decisions, revision', '/console/decisions?revision=sha256:aaaa1111'],
        ['decisions, reason text, 24 h', '/console/decisions?since=24h&reason=project:delete'],
        ['decisions, second page', ''],
        ['decision detail', `/console/decisions/${denied.id}`],
        ['explain playground', '/console/explain?subject=user-5&method=DELETE&path=/orgs/org-6/projects/project-1'],
        ['access map', '/console/access?org=org-17'],
        ['policy', '/console/policy'],
        ['directory', '/console/directory'],
        ['directory, one organization', '/console/directory/org-17'],
      ];
      const first = await (await fetch(`${gateway.adminUrl}/console/decisions`, { headers: { cookie } })).text();
      views[6]![1] = /href="([^"]+)" rel="next"/.exec(first)![1]!.replace(/&amp;/g, '&');
      const lines = [
        '## Operator console (`npm run bench:console`)',
        '',
        ...(await describeMachine(db)),
        `- ${RECORDS.toLocaleString('en')} decision records over 30 days; 2,000 users, 200 organizations. Time to the full HTML of each view's first page, as a signed-in browser fetches it (server-side rendering included): cold (first fetch), then the median of ${RUNS}. Budget: ${BUDGET_MS} ms.`,
        '',
        '| view | cold ms | median ms |',
        '|---|---|---|',
      ];
      let over = 0;
      for (const [name, url] of views) {
        const times: number[] = [];
        let status = 0;
        for (let run = 0; run <= RUNS; run += 1) {
          const t0 = performance.now();
          const response = await fetch(`${gateway.adminUrl}${url}`, { headers: { cookie } });
          await response.text();
          times.push(performance.now() - t0);
          status = response.status;
        }
        if (status !== 200) throw new Error(`${name} (${url}) answered ${status}`);
        const median = [...times.slice(1)].sort((a, b) => a - b)[Math.floor(RUNS / 2)]!;
        if (median > BUDGET_MS) over += 1;
        log(`  ${name.padEnd(36)} cold ${times[0]!.toFixed(0).padStart(5)} ms   median ${median.toFixed(0).padStart(5)} ms`);
        lines.push(`| ${name} | ${times[0]!.toFixed(0)} | ${median.toFixed(0)} |`);
      }
      log(over === 0 ? `every view under ${BUDGET_MS} ms` : `${over} view(s) over ${BUDGET_MS} ms`);
      await writeBenchmarkSection('Operator console (npm run bench:console)', lines);
    } finally {
      await gateway.close();
    }
  } finally {
    await env.close();
  }
}

async function signIn(adminUrl: string): Promise<string> {
  const form = await fetch(`${adminUrl}/console/sign-in`);
  const pre = form.headers
    .getSetCookie()
    .find((header) => header.startsWith('portcullis_console_signin='))!
    .split(';')[0]!;
  const csrf = /name="csrf" value="([^"]+)"/.exec(await form.text())![1]!;
  const response = await fetch(`${adminUrl}/console/sign-in`, {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: pre },
    body: new URLSearchParams({ csrf, token: TOKEN }).toString(),
  });
  const session = response.headers.getSetCookie().find((header) => header.startsWith('portcullis_console='));
  if (!session) throw new Error(`sign-in failed: ${response.status}`);
  return session.split(';')[0]!;
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
