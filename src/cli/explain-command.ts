// `portcullis explain --as <sub> <METHOD> <PATH>`: a dry run for a person. With a configuration
// file it loads the database and the policy itself (no running gateway needed); without one it
// asks the running demo's admin API (POST /admin/v1/evaluate). Either way the request is judged
// as the gateway would, recorded as a dry run, and the answer says why it is allowed or denied.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Command } from 'commander';
import type { Knex } from 'knex';
import pino from 'pino';
import { routeTable } from '../app';
import { BatchingDecisionRecorder } from '../audit/recording/batching-decision-recorder';
import { resolveInstanceId } from '../audit/chain/instance-id';
import { PgDecisionStore } from '../audit/chain/pg-decision-store';
import { PgShadowDisagreementStore } from '../audit/store/pg-shadow-disagreement-store';
import { PolicyExplainer, requestTime, type ExplainQuery, type Explanation, type GrantTried } from '../authz/policy-explainer';
import { setUpPolicies } from '../authz/policy-setup';
import { RequestJudge } from '../authz/request-judge';
import type { PolicyDecision } from '../authz/policy-engine';
import { ConfigError } from '../base/errors';
import { createDatabase, migrateToLatest } from '../db/database';
import { EmbeddedDatabase } from '../db/embedded-database';
import { readDemoAdminAccess } from '../demo/demo-admin-access';
import { PgFactsLoader } from '../directory/pg-facts-loader';
import { PgGrantDirectory } from '../directory/pg-grant-directory';
import { PgSubjectLoader } from '../directory/pg-subject-loader';
import type { CliContext } from './cli-context';

export function registerExplainCommand(program: Command, ctx: CliContext): void {
  program
    .command('explain')
    .description('judge a request for a subject without a token and say why it is allowed or denied (recorded as a dry run)')
    .requiredOption('--as <subject>', 'the JWT sub, or the users.id, to judge the request for')
    .option('--json', 'print the explanation as JSON (the same as POST /admin/v1/evaluate)')
    .option('--at <time>', "the request's time (RFC 3339, e.g. 2026-12-04T10:00:00Z), for rules on request.time (default: now)")
    .option(
      '--state-dir <dir>',
      "without a configuration file: the running demo's state folder (default: $PORTCULLIS_STATE_DIR, else .portcullis/ in the project)",
    )
    .argument('<method>', 'HTTP method, e.g. DELETE')
    .argument('<path>', 'request path, e.g. /orgs/acme')
    .action(async (method: string, requestPath: string, options: { as: string; json?: boolean; at?: string; stateDir?: string }) => {
      // Checked here too, so the error names the flag rather than the API's field.
      if (options.at !== undefined) requestTime(options.at, '--at');
      const query: ExplainQuery = { subject: options.as, method, path: requestPath, time: options.at };
      const explanation = ctx.configFile() ? await explainStandalone(ctx, query) : await explainWithDemo(ctx, query, options.stateDir);
      if (options.json) ctx.io.out(JSON.stringify(explanation, null, 2));
      else for (const line of formatExplanation(explanation)) ctx.io.out(line);
    });
}

async function explainStandalone(ctx: CliContext, query: ExplainQuery): Promise<Explanation> {
  const { config, file } = ctx.requireConfig();
  const logger = pino({ name: 'portcullis', level: ctx.io.env.LOG_LEVEL ?? 'warn' }, pino.destination(2));
  const cleanup: Array<() => Promise<void> | void> = [];
  try {
    let url = config.database.url;
    if (!url) {
      const embedded = await EmbeddedDatabase.create({ dataDir: path.join(ctx.stateDir(file), 'pgdata') });
      cleanup.push(() => embedded.stop());
      url = embedded.url;
    }
    const db: Knex = createDatabase({ url });
    cleanup.push(() => db.destroy());
    if (!config.database.url) await migrateToLatest(db);

    // Its own build folder: a gateway compiling the same sources at the same time is unaffected.
    const buildDir = await mkdtemp(path.join(os.tmpdir(), 'portcullis-explain-'));
    cleanup.push(() => rm(buildDir, { recursive: true, force: true }));
    const policies = await setUpPolicies(config.policy, {
      buildDir,
      toolchain: ctx.toolchain(() => undefined),
      logger,
      disagreements: new PgShadowDisagreementStore(db),
    });
    cleanup.push(() => policies.close());
    const { id: chain } = await resolveInstanceId(config.audit.instance_id, ctx.stateDir(file));
    const recorder = new BatchingDecisionRecorder(new PgDecisionStore(db, chain), {
      onError: (error) => logger.error({ err: error }, 'the dry run could not be recorded yet'),
    });
    cleanup.push(() => recorder.close());

    const explainer = new PolicyExplainer({
      routes: routeTable(config, logger),
      judge: new RequestJudge({
        subjects: new PgSubjectLoader(db),
        facts: new PgFactsLoader(db),
        policy: policies.policy,
        shadow: policies.shadow,
      }),
      policy: policies.policy,
      directory: new PgGrantDirectory(db),
      recorder,
    });
    return await explainer.explain(query);
  } finally {
    for (const step of cleanup.reverse()) await step();
  }
}

/** Asks the demo running on the state folder: its admin API judges with its own database and policy. */
async function explainWithDemo(ctx: CliContext, query: ExplainQuery, stateDirFlag: string | undefined): Promise<Explanation> {
  const stateDir = ctx.stateDir(undefined, stateDirFlag);
  const access = await readDemoAdminAccess(stateDir);
  if (!access) {
    throw new ConfigError(
      `no configuration file and no demo running on ${stateDir}: pass --config FILE (or set PORTCULLIS_CONFIG), or start the demo (npm start)`,
    );
  }
  let res: Response;
  try {
    res = await fetch(`${access.url}/admin/v1/evaluate`, {
      method: 'POST',
      headers: { authorization: `Bearer ${access.token}`, 'content-type': 'application/json' },
      body: JSON.stringify(query),
      signal: AbortSignal.timeout(30_000),
    });
  } catch (error) {
    throw new Error(`the demo's admin API at ${access.url} does not answer: ${(error as Error).message}`);
  }
  const body = (await res.json().catch(() => undefined)) as (Explanation & { detail?: string }) | undefined;
  if (!res.ok || !body) throw new Error(body?.detail ?? `the demo's admin API answered ${res.status}`);
  return body;
}

/** The explanation for a person: route, membership, facts, decision, and what would allow it. */
export function formatExplanation(e: Explanation): string[] {
  const who = e.subject.id
    ? `${e.subject.sub} (user ${e.subject.id}${e.subject.email ? `, ${e.subject.email}` : ''})`
    : `${e.subject.sub} (no users row)`;
  const lines = [`${e.method} ${e.path} as ${who}`, ''];
  if (!e.route) {
    lines.push(`route       none: the gateway answers 404 before judging anything`, '', `decision    ${verdict(e.result)}`);
    return lines;
  }
  lines.push(`route       ${e.method} ${e.route.pattern} -> ${e.route.service}`);
  lines.push(`action      ${e.action}`);
  lines.push(`resource    ${JSON.stringify(e.resource)}`);
  const org = e.resource?.org;
  if (org !== undefined) {
    if (e.membership) {
      const m = e.membership;
      lines.push(`membership  in ${org}: role ${m.role || '(none that counts)'}; teams ${list(m.teams)}; roles ${list(m.roles)}`);
      lines.push(`            permissions ${list(m.permissions)}`);
    } else {
      lines.push(`membership  not a member of ${org}`);
    }
  }
  lines.push(`facts       ${JSON.stringify(e.facts)}`);
  const time = e.input?.request.time;
  if (time) lines.push(`time        ${time} (${new Date(time).toLocaleDateString('en-US', { weekday: 'long', timeZone: 'UTC' })}, UTC)`);
  lines.push('');
  lines.push(`decision    ${verdict(e.result)}  (policy ${e.revision}, ${e.latency_us} µs)`);
  for (const reason of e.result.reasons) lines.push(`  - ${reason}`);
  if (e.missing_permission) lines.push('', ...whatWouldAllowIt(e.missing_permission, e.membership !== null));
  if (e.shadow)
    lines.push('', `shadow      ${verdict(e.shadow.result)}  (policy ${e.shadow.revision}) ${e.shadow.agrees ? 'agrees' : 'DISAGREES'}`);
  lines.push('', `recorded as dry-run decision ${e.decision_id}`);
  return lines;
}

/** Only grants the policy, run again with them, allows; else why nothing in the directory would do. */
function whatWouldAllowIt(missing: NonNullable<Explanation['missing_permission']>, member: boolean): string[] {
  const { permission, organization: org, granted_by } = missing;
  if (granted_by.length === 0) {
    return [
      `what would allow it: no role of ${org} holds '${permission}'; create one holding it and give it to the member or one of their teams`,
    ];
  }
  const roleOf = (name: string) => {
    const grant = granted_by.find((g) => g.role === name)!;
    return `${grant.role} (${grant.builtin ? 'built-in' : `${org}'s own`}, via ${grant.via.join(', ')})`;
  };
  const change = (grant: GrantTried) =>
    grant.change === 'team'
      ? `joining team ${grant.team}, which carries role ${roleOf(grant.role)}`
      : `${member ? 'default role' : `membership of ${org} with default role`} ${roleOf(grant.role)}`;
  if (missing.would_allow.length > 0) {
    return [
      `what would allow it (the policy run again with each grant added):`,
      ...missing.would_allow.map((grant) => `  - ${change(grant)}`),
    ];
  }
  return [
    `what would allow it: nothing in ${org}'s directory. Every grant carrying '${permission}' leaves it denied:`,
    ...missing.still_denied.map(
      (grant) =>
        `  - ${change(grant)}: ${verdict(grant.result)}${grant.result.reasons.length > 0 ? `: ${grant.result.reasons.join('; ')}` : ''}`,
    ),
  ];
}

function verdict(decision: PolicyDecision): string {
  return `${decision.allow ? 'ALLOW' : 'DENY'} ${decision.allow ? 200 : decision.status}`;
}

function list(items: readonly string[]): string {
  return items.length > 0 ? items.join(', ') : '(none)';
}
