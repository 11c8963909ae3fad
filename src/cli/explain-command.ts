// `portcullis explain --as <sub> <METHOD> <PATH>`: a dry run for a person. Loads the database
// and the policy from the configuration itself (no running gateway needed), judges the request
// as the gateway would, records it as a dry run, and prints why it is allowed or denied.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Command } from 'commander';
import type { Knex } from 'knex';
import pino from 'pino';
import { routeTable } from '../app';
import { BatchingDecisionRecorder } from '../audit/batching-decision-recorder';
import { PgDecisionStore } from '../audit/pg-decision-store';
import { PgShadowDisagreementStore } from '../audit/pg-shadow-disagreement-store';
import { PolicyExplainer, type Explanation } from '../authz/policy-explainer';
import { setUpPolicies } from '../authz/policy-setup';
import { RequestJudge } from '../authz/request-judge';
import type { PolicyDecision } from '../authz/policy-engine';
import { createDatabase, migrateToLatest } from '../db/database';
import { EmbeddedDatabase } from '../db/embedded-database';
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
    .argument('<method>', 'HTTP method, e.g. DELETE')
    .argument('<path>', 'request path, e.g. /orgs/acme')
    .action(async (method: string, requestPath: string, options: { as: string; json?: boolean }) => {
      const explanation = await explainStandalone(ctx, { subject: options.as, method, path: requestPath });
      if (options.json) ctx.io.out(JSON.stringify(explanation, null, 2));
      else for (const line of formatExplanation(explanation)) ctx.io.out(line);
    });
}

async function explainStandalone(ctx: CliContext, query: { subject: string; method: string; path: string }): Promise<Explanation> {
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
    const recorder = new BatchingDecisionRecorder(new PgDecisionStore(db), { onError: (error) => logger.error({ err: error }, 'the dry run could not be recorded yet') });
    cleanup.push(() => recorder.close());

    const explainer = new PolicyExplainer({
      routes: routeTable(config, logger),
      judge: new RequestJudge({ subjects: new PgSubjectLoader(db), facts: new PgFactsLoader(db), policy: policies.policy, shadow: policies.shadow }),
      directory: new PgGrantDirectory(db),
      recorder,
    });
    return await explainer.explain(query);
  } finally {
    for (const step of cleanup.reverse()) await step();
  }
}

/** The explanation for a person: route, membership, facts, decision, and what would allow it. */
export function formatExplanation(e: Explanation): string[] {
  const who = e.subject.id ? `${e.subject.sub} (user ${e.subject.id}${e.subject.email ? `, ${e.subject.email}` : ''})` : `${e.subject.sub} (no users row)`;
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
  lines.push(`facts       ${JSON.stringify(e.facts)}`, '');
  lines.push(`decision    ${verdict(e.result)}  (policy ${e.revision}, ${e.latency_us} µs)`);
  for (const reason of e.result.reasons) lines.push(`  - ${reason}`);
  if (e.missing_permission) {
    const { permission, organization, granted_by } = e.missing_permission;
    lines.push('', `what would allow it: '${permission}' in ${organization} comes with`);
    if (granted_by.length === 0) lines.push(`  no role of ${organization}; create one holding '${permission}' and give it to the member or one of their teams`);
    for (const grant of granted_by) {
      const kind = grant.builtin ? 'built-in' : `${organization}'s own`;
      const teams = grant.teams.length > 0 ? `carried by team${grant.teams.length > 1 ? 's' : ''} ${grant.teams.join(', ')}` : 'carried by no team';
      lines.push(`  - role ${grant.role} (${kind}, via ${grant.via.join(', ')}): ${teams}`);
    }
    lines.push(
      e.membership
        ? `  (a member's permissions are their default role's plus their teams' roles, R4)`
        : `  (they must first become a member of ${organization}, with one of these roles as default role or in a team that carries one)`,
    );
  }
  if (e.shadow) lines.push('', `shadow      ${verdict(e.shadow.result)}  (policy ${e.shadow.revision}) ${e.shadow.agrees ? 'agrees' : 'DISAGREES'}`);
  lines.push('', `recorded as dry-run decision ${e.decision_id}`);
  return lines;
}

function verdict(decision: PolicyDecision): string {
  return `${decision.allow ? 'ALLOW' : 'DENY'} ${decision.allow ? 200 : decision.status}`;
}

function list(items: readonly string[]): string {
  return items.length > 0 ? items.join(', ') : '(none)';
}
