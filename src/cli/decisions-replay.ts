// `decisions replay`: judges recorded inputs with a candidate policy (a Rego directory compiled
// with the pinned opa, or a bundle) and reports the flips, so a policy change can be gated in CI
// with --fail-on-change.
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Command } from 'commander';
import { parseDecisionFilter } from '../audit/decision-filter';
import { replayDecisions, type ReplayReport } from '../audit/decision-replay';
import { PgDecisionQueryStore } from '../audit/pg-decision-query-store';
import { buildWasmBundle, resolveOpa } from '../authz/opa-toolchain';
import { readBundle } from '../authz/policy-bundle';
import type { PolicyEngine } from '../authz/policy-engine';
import { WasmPolicyEngine } from '../authz/wasm-policy-engine';
import { InputError } from '../http/errors';
import { check, usageErrorsCouldNotCheck } from './check-command';
import type { CliContext } from './cli-context';
import { withDecisionLog } from './decisions-database';

interface ReplayCommandOptions {
  policy: string;
  since: string;
  until?: string;
  org?: string;
  action?: string;
  entrypoint?: string;
  failOnChange?: boolean;
  format: string;
}

export function registerReplayCommand(decisions: Command, ctx: CliContext): void {
  usageErrorsCouldNotCheck(decisions.command('replay'))
    .description('re-evaluate recorded inputs with a candidate policy and report every decision that would flip')
    .requiredOption('-p, --policy <source>', 'the candidate: a directory of .rego, or a bundle .tar.gz')
    .option('--since <time>', 'ISO-8601 time or a duration back from now', '24h')
    .option('--until <time>', 'ISO-8601 time or a duration back from now')
    .option('--org <slug>', 'only this organization')
    .option('--action <action>', 'only this action')
    .option('-e, --entrypoint <path>', 'the rule to evaluate (default: policy.entrypoint, else portcullis/decision)')
    .option('--fail-on-change', 'exit 1 when any decision flips (to gate a policy change in CI); 2 when replay could not run')
    .option('--format <format>', 'text|json', 'text')
    .action((options: ReplayCommandOptions) => check(ctx, () => replay(options, ctx)));
}

async function replay(options: ReplayCommandOptions, ctx: CliContext): Promise<void> {
  const { io } = ctx;
  if (options.format !== 'text' && options.format !== 'json') throw new InputError('--format: must be text or json');
  const filter = parseDecisionFilter({ since: options.since, until: options.until, org: options.org, action: options.action });
  const report = await withDecisionLog(ctx, async ({ db, entrypoint: configured }) => {
    const entrypoint = options.entrypoint ?? configured ?? 'portcullis/decision';
    const candidate = await loadCandidate(path.resolve(io.cwd, options.policy), entrypoint, ctx);
    return replayDecisions(new PgDecisionQueryStore(db), candidate, {
      filter,
      onProgress: (done, total) => io.err(`replayed ${done.toLocaleString('en')} of ${total.toLocaleString('en')} decisions (${Math.floor((100 * done) / Math.max(1, total))} %)…`),
    });
  });
  if (options.format === 'json') io.out(JSON.stringify(report, null, 2));
  else for (const line of describe(report, filter.since, filter.until)) io.out(line);
  if (options.failOnChange && report.flipped > 0) {
    io.err(`portcullis: ${report.flipped} decision${report.flipped === 1 ? '' : 's'} would flip with policy revision ${report.revision}`);
    ctx.setExitCode(1);
  }
}

async function loadCandidate(source: string, entrypoint: string, ctx: CliContext): Promise<PolicyEngine> {
  const info = await stat(source).catch(() => undefined);
  if (!info) throw new InputError(`--policy: ${source} does not exist`);
  let bytes: Buffer;
  if (info.isDirectory()) {
    const opa = await resolveOpa(ctx.toolchain());
    const scratch = await mkdtemp(path.join(os.tmpdir(), 'portcullis-replay-'));
    try {
      const { output } = await buildWasmBundle({ opa, source, entrypoints: [entrypoint], output: path.join(scratch, 'bundle.tar.gz') });
      bytes = await readFile(output);
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  } else {
    bytes = await readFile(source);
  }
  return WasmPolicyEngine.create(await readBundle(bytes), entrypoint);
}

function describe(report: ReplayReport, since: Date | undefined, until: Date | undefined): string[] {
  const count = (n: number, what: string) => `${n.toLocaleString('en')} ${what}${n === 1 ? '' : 's'}`;
  const window = `${since ? ` since ${since.toISOString()}` : ''}${until ? ` until ${until.toISOString()}` : ''}`;
  const lines = [
    `replayed ${count(report.replayed, 'decision')}${window} with policy revision ${report.revision}: ` +
      `${report.flipped.toLocaleString('en')} flipped, ${report.unchanged.toLocaleString('en')} unchanged; ` +
      `${report.skipped.toLocaleString('en')} skipped (no stored input, e.g. 401s)`,
  ];
  for (const group of report.groups) {
    lines.push(
      '',
      `${group.direction}  ${count(group.count, 'decision')}  ${group.action}  ${group.organization ? `org ${group.organization}` : 'no organization'}`,
      `  reason: ${group.reason}`,
      `  e.g. ${group.examples.join(', ')}`,
    );
  }
  return lines;
}
