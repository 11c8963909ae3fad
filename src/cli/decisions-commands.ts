// `decisions query | tail | verify | replay | summary | export | to-test`: what operators and
// auditors run against the decision log. They read PostgreSQL directly (see
// decisions-database.ts), never a gateway.
import type { Command } from 'commander';
import { CommittedHorizon } from '../audit/store/committed-horizon';
import { regressionTests } from '../audit/replay/decision-regression-test';
import { PgDecisionQueryStore, type DecisionDetail, type DecisionSummary } from '../audit/store/pg-decision-query-store';
import { InputError } from '../base/errors';
import type { CliContext } from './cli-context';
import { withDecisionLog } from './decisions-database';
import { registerExportCommand } from './decisions-export';
import { filterOptions, parseFilterOptions, resolveUser, suggestPeople, type FilterOptions } from './decisions-filter';
import { FORMATS, decisionStream, formatDecisions, type OutputFormat } from './decisions-output';
import { registerReplayCommand } from './decisions-replay';
import { registerSummaryCommand } from './decisions-summary';
import { registerVerifyCommand } from './decisions-verify';

const PAGE = 1000;

export function registerDecisionCommands(program: Command, ctx: CliContext): void {
  const { io } = ctx;
  const decisions = program.command('decisions').description('query, follow, count, export, verify and replay the decision log');

  const withFormat = (command: Command) => filterOptions(command).option('--format <format>', FORMATS.join('|'), 'table');

  withFormat(decisions.command('query').description('list decisions matching the filters, newest first'))
    .option('--limit <n>', 'most records to print', '50')
    .option('--all', 'print every matching record, page by page (constant memory)')
    .action(async (options: FilterOptions & { limit: string; all?: boolean; format: string }) => {
      const format = outputFormat(options.format);
      const limit = options.all ? Number.POSITIVE_INFINITY : Number(options.limit);
      if (!options.all && (!Number.isInteger(limit) || limit < 1)) throw new InputError('--limit: must be a whole number above 0');
      const parsed = parseFilterOptions(options);
      await withDecisionLog(ctx, async ({ db }) => {
        const filter = await resolveUser(parsed, options.user, db);
        const store = new PgDecisionQueryStore(db);
        // --all prints each page as it comes; otherwise the table measures its columns first.
        const stream = options.all ? decisionStream(format, io.out) : undefined;
        const found: DecisionSummary[] = [];
        let shown = 0;
        let more = false;
        // Pages by seq, with the window resolved once above: a long walk stays one window.
        let beforeSeq: number | undefined;
        for (;;) {
          const page = await store.list(filter, { limit: Math.min(PAGE, limit - shown), beforeSeq });
          shown += page.decisions.length;
          if (stream) {
            stream.write(page.decisions);
            await io.drain?.();
          } else {
            found.push(...page.decisions);
          }
          beforeSeq = page.decisions[page.decisions.length - 1]?.seq;
          more = page.more;
          if (!page.more || shown >= limit) break;
        }
        if (stream) stream.end();
        else for (const line of formatDecisions(found, format, { header: true })) io.out(line);
        if (more) {
          const total = await store.count(filter);
          io.err(`${shown.toLocaleString('en')} of ${total.toLocaleString('en')} shown: --limit N or --all`);
        } else if (shown === 0) {
          const hint = await suggestPeople(options, filter, db);
          if (hint) io.err(hint);
        }
      });
    });

  withFormat(decisions.command('tail').description('print the newest decisions, then follow new ones until Ctrl-C'))
    .option('--last <n>', 'decisions to show before following', '10')
    .option('--interval <ms>', 'how often to look for new decisions', '1000')
    .action(async (options: FilterOptions & { last: string; interval: string; format: string }) => {
      const format = outputFormat(options.format);
      if (format === 'json') throw new InputError('--format: tail prints a stream; use ndjson, csv or table');
      const parsed = parseFilterOptions(options);
      const last = Number(options.last);
      if (!Number.isInteger(last) || last < 0 || last > PAGE) throw new InputError(`--last: must be a whole number from 0 to ${PAGE}`);
      const intervalMs = Math.max(100, Number(options.interval) || 1000);
      await withDecisionLog(ctx, async ({ db }) => {
        const filter = await resolveUser(parsed, options.user, db);
        const store = new PgDecisionQueryStore(db);
        // Only as far as every record is committed: a late commit below it would be skipped.
        const horizon = new CommittedHorizon(store);
        let lastSeq = await horizon.start();
        const recent = last > 0 ? (await store.list(filter, { limit: last, beforeSeq: lastSeq + 1 })).decisions.reverse() : [];
        let header = true;
        const print = (rows: DecisionSummary[]) => {
          for (const line of formatDecisions(rows, format, { header, stream: true })) io.out(line);
          header = false;
        };
        print(recent);
        let stopped = false;
        const stop = ctx.untilSignal().then(() => (stopped = true));
        while (!stopped) {
          await Promise.race([stop, new Promise((resolve) => setTimeout(resolve, intervalMs))]);
          if (stopped) break;
          const through = await horizon.advance();
          for (;;) {
            const rows = await store.after(lastSeq, through, filter, PAGE);
            if (rows.length === 0) break;
            lastSeq = rows[rows.length - 1]!.seq;
            print(rows);
          }
          lastSeq = Math.max(lastSeq, through);
        }
      });
    });

  registerVerifyCommand(decisions, ctx);
  registerReplayCommand(decisions, ctx);
  registerSummaryCommand(decisions, ctx);
  registerExportCommand(decisions, ctx);

  decisions
    .command('to-test')
    .description('print an `opa test` file reproducing these decisions with their stored (masked) input')
    .argument('<id...>', 'decision ids (the x-portcullis-decision header, or decision_id of a denial)')
    .option('-e, --entrypoint <path>', 'the rule the tests evaluate (default: policy.entrypoint, else portcullis/decision)')
    .action(async (ids: string[], options: { entrypoint?: string }) => {
      const { found, entrypoint } = await withDecisionLog(ctx, async ({ db, entrypoint: configured }) => {
        const store = new PgDecisionQueryStore(db);
        const found: DecisionDetail[] = [];
        for (const id of ids) {
          const decision = await store.get(id);
          if (!decision) throw new InputError(`no decision ${id} in the decision log`);
          if (decision.input === null)
            throw new InputError(
              `decision ${id} has no stored input: it was refused (${decision.status}) before the policy was asked, so there is nothing to replay`,
            );
          found.push(decision);
        }
        return { found, entrypoint: options.entrypoint ?? configured ?? 'portcullis/decision' };
      });
      io.out(regressionTests(found, entrypoint).trimEnd());
    });
}

export function outputFormat(format: string): OutputFormat {
  if (!(FORMATS as readonly string[]).includes(format)) throw new InputError(`--format: must be one of ${FORMATS.join(', ')}`);
  return format as OutputFormat;
}
