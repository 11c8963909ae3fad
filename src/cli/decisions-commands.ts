// `decisions query | tail | verify | replay | to-test`: what operators and auditors run against
// the decision log. They read PostgreSQL directly (see decisions-database.ts), never a gateway.
import type { Command } from 'commander';
import { verifyChain } from '../audit/decision-chain-verifier';
import { parseDecisionFilter, type FilterText } from '../audit/decision-filter';
import { regressionTests } from '../audit/decision-regression-test';
import { PgDecisionQueryStore, type DecisionDetail, type DecisionSummary } from '../audit/pg-decision-query-store';
import { parseTimeBound } from '../audit/time-bound';
import { InputError } from '../http/errors';
import type { CliContext } from './cli-context';
import { withDecisionLog } from './decisions-database';
import { FORMATS, formatDecisions, type OutputFormat } from './decisions-output';
import { registerReplayCommand } from './decisions-replay';

const PAGE = 1000;

export function registerDecisionCommands(program: Command, ctx: CliContext): void {
  const { io } = ctx;
  const decisions = program.command('decisions').description('query, follow, verify and replay the decision log');

  const filterOptions = (command: Command) =>
    command
      .option('--subject <sub>', "the token's sub")
      .option('--org <slug>', 'organization slug')
      .option('--action <action>', 'e.g. project:delete')
      .option('--allow <true|false>', 'only allows, or only denials')
      .option('--since <time>', 'ISO-8601 time or a duration back from now (30m, 24h, 7d)')
      .option('--until <time>', 'ISO-8601 time or a duration back from now')
      .option('--format <format>', FORMATS.join('|'), 'table');

  filterOptions(decisions.command('query').description('list decisions matching the filters, newest first'))
    .option('--limit <n>', 'most records to print', '50')
    .action(async (options: FilterText & { limit: string; format: string }) => {
      const format = outputFormat(options.format);
      const limit = Number(options.limit);
      if (!Number.isInteger(limit) || limit < 1) throw new InputError('--limit: must be a whole number above 0');
      const filter = parseDecisionFilter(options);
      const rows = await withDecisionLog(ctx, async ({ db }) => {
        const store = new PgDecisionQueryStore(db);
        const found: DecisionSummary[] = [];
        let cursor: string | undefined;
        do {
          const page = await store.list(filter, { limit: Math.min(PAGE, limit - found.length), cursor });
          found.push(...page.decisions);
          cursor = page.next_cursor ?? undefined;
        } while (cursor && found.length < limit);
        return found;
      });
      for (const line of formatDecisions(rows, format, { header: true })) io.out(line);
    });

  filterOptions(decisions.command('tail').description('print the newest decisions, then follow new ones until Ctrl-C'))
    .option('--last <n>', 'decisions to show before following', '10')
    .option('--interval <ms>', 'how often to look for new decisions', '1000')
    .action(async (options: FilterText & { last: string; interval: string; format: string }) => {
      const format = outputFormat(options.format);
      if (format === 'json') throw new InputError('--format: tail prints a stream; use ndjson, csv or table');
      const filter = parseDecisionFilter(options);
      const last = Number(options.last);
      if (!Number.isInteger(last) || last < 0 || last > PAGE) throw new InputError(`--last: must be a whole number from 0 to ${PAGE}`);
      const intervalMs = Math.max(100, Number(options.interval) || 1000);
      await withDecisionLog(ctx, async ({ db }) => {
        const store = new PgDecisionQueryStore(db);
        let lastSeq = await store.lastSeq();
        const recent = last > 0 ? (await store.list(filter, { limit: last })).decisions.reverse() : [];
        lastSeq = Math.max(lastSeq, ...recent.map((decision) => decision.seq));
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
          for (;;) {
            const rows = await store.after(lastSeq, filter, PAGE);
            if (rows.length === 0) break;
            lastSeq = rows[rows.length - 1]!.seq;
            print(rows);
          }
        }
      });
    });

  decisions
    .command('verify')
    .description('recompute the hash chain; exit 1 naming the first record that breaks it')
    .option('--since <time>', 'start at the first record at or after this time (ISO-8601 or 24h, 7d, …), trusting its prev_hash')
    .action(async (options: { since?: string }) => {
      const since = options.since === undefined ? undefined : parseTimeBound(options.since, '--since');
      const started = Date.now();
      let lastProgress = started;
      const result = await withDecisionLog(ctx, ({ db }) =>
        verifyChain(new PgDecisionQueryStore(db), {
          since,
          onProgress: (checked, total) => {
            if (Date.now() - lastProgress < 2_000) return;
            lastProgress = Date.now();
            io.err(`verified ${checked.toLocaleString('en')} of ${total.toLocaleString('en')} decision records…`);
          },
        }),
      );
      const seconds = ((Date.now() - started) / 1000).toFixed(1);
      if (result.ok) {
        io.out(`verified ${result.checked} decision record${result.checked === 1 ? '' : 's'} in ${seconds} s: the chain is intact (head: seq ${result.head.seq}, hash ${result.head.hash})`);
        return;
      }
      const { broken } = result;
      io.err(`portcullis: the decision chain is broken at ${broken.id ? `decision ${broken.id} ` : ''}(seq ${broken.seq}): ${broken.problem}; ${result.checked} records before it verified`);
      ctx.setExitCode(1);
    });

  registerReplayCommand(decisions, ctx);

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
          if (decision.input === null) throw new InputError(`decision ${id} has no stored input: it was refused (${decision.status}) before the policy was asked, so there is nothing to replay`);
          found.push(decision);
        }
        return { found, entrypoint: options.entrypoint ?? configured ?? 'portcullis/decision' };
      });
      io.out(regressionTests(found, entrypoint).trimEnd());
    });
}

function outputFormat(format: string): OutputFormat {
  if (!(FORMATS as readonly string[]).includes(format)) throw new InputError(`--format: must be one of ${FORMATS.join(', ')}`);
  return format as OutputFormat;
}
