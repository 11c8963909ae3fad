// `decisions replay`: judges recorded inputs with a candidate policy (a Rego directory compiled
// with the pinned opa, or a bundle) and reports every change (allow flips, new statuses,
// evaluation errors) by the revision that recorded it, so a policy change can be gated in CI
// with --fail-on-change. Dry runs are left out unless asked for.
import path from 'node:path';
import type { Command } from 'commander';
import { replayDecisions, type ChangeCounts, type ReplayReport } from '../audit/replay/decision-replay';
import { PgDecisionQueryStore } from '../audit/store/pg-decision-query-store';
import { loadCandidatePolicy } from '../authz/candidate-policy';
import { InputError } from '../base/errors';
import { check, usageErrorsCouldNotCheck } from './check-command';
import type { CliContext } from './cli-context';
import { withDecisionLog } from './decisions-database';
import { parseFilterOptions } from './decisions-filter';

interface ReplayCommandOptions {
  policy: string;
  since: string;
  until?: string;
  org?: string;
  action?: string;
  entrypoint?: string;
  failOnChange?: boolean;
  dryRun?: string;
  includeDryRuns?: boolean;
  format: string;
}

export function registerReplayCommand(decisions: Command, ctx: CliContext): void {
  usageErrorsCouldNotCheck(decisions.command('replay'))
    .description('re-evaluate recorded inputs with a candidate policy and report every decision that would change')
    .requiredOption('-p, --policy <source>', 'the candidate: a directory of .rego, or a bundle .tar.gz')
    .option('--since <time>', 'ISO-8601 time or a duration back from now', '24h')
    .option('--until <time>', 'ISO-8601 time or a duration back from now')
    .option('--org <slug>', 'only this organization')
    .option('--action <action>', 'only this action')
    .option('-e, --entrypoint <path>', 'the rule to evaluate (default: policy.entrypoint, else portcullis/decision)')
    .option('--dry-run <true|false>', 'only dry runs, or only served requests (the default)')
    .option('--include-dry-runs', 'replay dry runs (admin evaluate, explain) too')
    .option('--fail-on-change', 'exit 1 when any decision would change (to gate a policy change in CI); 2 when replay could not run')
    .option('--format <format>', 'text|json', 'text')
    .action((options: ReplayCommandOptions) => check(ctx, () => replay(options, ctx)));
}

async function replay(options: ReplayCommandOptions, ctx: CliContext): Promise<void> {
  const { io } = ctx;
  if (options.format !== 'text' && options.format !== 'json') throw new InputError('--format: must be text or json');
  if (options.dryRun !== undefined && options.includeDryRuns) throw new InputError('--include-dry-runs: leave it out with --dry-run');
  const filter = parseFilterOptions(
    { since: options.since, until: options.until, org: options.org, action: options.action, dryRun: options.dryRun },
    { dryRun: options.includeDryRuns ? undefined : false },
  );
  const report = await withDecisionLog(ctx, async ({ db, entrypoint: configured }) => {
    const entrypoint = options.entrypoint ?? configured ?? 'portcullis/decision';
    const candidate = await loadCandidatePolicy(path.resolve(io.cwd, options.policy), {
      entrypoint,
      toolchain: ctx.toolchain(),
      name: '--policy',
    });
    return replayDecisions(new PgDecisionQueryStore(db), candidate, {
      filter,
      onProgress: (done, total) =>
        io.err(
          `replayed ${done.toLocaleString('en')} of ${total.toLocaleString('en')} decisions (${Math.floor((100 * done) / Math.max(1, total))} %)…`,
        ),
    });
  });
  if (options.format === 'json') io.out(JSON.stringify(report, null, 2));
  else for (const line of describe(report, filter.since, filter.until)) io.out(line);
  if (options.failOnChange && report.changed > 0) {
    io.err(
      `portcullis: ${report.changed} decision${report.changed === 1 ? '' : 's'} would change with policy revision ${report.revision} (${changes(report)})`,
    );
    ctx.setExitCode(1);
  }
}

const count = (n: number, what: string, plural = `${what}s`) => `${n.toLocaleString('en')} ${n === 1 ? what : plural}`;

function changes(counts: ChangeCounts): string {
  return `${count(counts.flipped, 'allow flip')}, ${count(counts.statusChanged, 'status change')}, ${count(counts.errors, 'evaluation error')}`;
}

function describe(report: ReplayReport, since: Date | undefined, until: Date | undefined): string[] {
  const window = `${since ? ` since ${since.toISOString()}` : ''}${until ? ` until ${until.toISOString()}` : ''}`;
  const lines = [
    `replayed ${count(report.replayed, 'decision')}${window} with policy revision ${report.revision}: ` +
      `${report.changed.toLocaleString('en')} changed (${changes(report)}), ${report.unchanged.toLocaleString('en')} unchanged; ` +
      `${report.skipped.toLocaleString('en')} skipped (no stored input, e.g. 401s)`,
  ];
  for (const revision of report.revisions) {
    lines.push(
      '',
      `recorded by policy revision ${revision.revision ?? '(none)'}: ${count(revision.replayed, 'decision')}, ${revision.changed.toLocaleString('en')} changed (${changes(revision)})`,
    );
    for (const group of report.groups.filter((g) => g.recordedRevision === revision.revision)) {
      lines.push(
        `  ${group.change}  ${count(group.count, 'decision')}  ${group.action}  ${group.organization ? `org ${group.organization}` : 'no organization'}`,
        `    ${group.kind === 'error' ? 'error' : 'reason'}: ${group.reason}`,
        `    e.g. ${group.examples.join(', ')}`,
      );
    }
  }
  return lines;
}
