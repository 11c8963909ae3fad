// `decisions query | tail | verify | replay | to-test`: what operators and auditors run against
// the decision log. They read PostgreSQL directly (see decisions-database.ts), never a gateway.
import type { KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { readPublicKey } from '../audit/checkpoint-key';
import { verifyChain } from '../audit/decision-chain-verifier';
import { verifyCheckpoints } from '../audit/decision-checkpoint-verifier';
import { parseDecisionFilter, type FilterText } from '../audit/decision-filter';
import { regressionTests } from '../audit/decision-regression-test';
import { PgDecisionCheckpointStore } from '../audit/pg-decision-checkpoint-store';
import { PgDecisionQueryStore, type DecisionDetail, type DecisionSummary } from '../audit/pg-decision-query-store';
import { parseTimeBound } from '../audit/time-bound';
import { InputError } from '../http/errors';
import { check, usageErrorsCouldNotCheck } from './check-command';
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
      .option('--since <time>', 'ISO-8601 time (UTC unless it has an offset) or a duration back from now (30m, 24h, 7d)')
      .option('--until <time>', 'ISO-8601 time (UTC unless it has an offset) or a duration back from now')
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
        // Pages by seq, with the window resolved once above: a long export stays one window.
        let beforeSeq: number | undefined;
        for (;;) {
          const page = await store.list(filter, { limit: Math.min(PAGE, limit - found.length), beforeSeq });
          found.push(...page.decisions);
          beforeSeq = page.decisions[page.decisions.length - 1]?.seq;
          if (!page.more || found.length >= limit) return found;
        }
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

  usageErrorsCouldNotCheck(decisions.command('verify'))
    .description('recompute the hash chain (and with --public-key the signed checkpoints); exit 1 naming what breaks it, 2 when it could not be checked')
    .option('--since <time>', 'start at the first record at or after this time (ISO-8601 or 24h, 7d, …), trusting its prev_hash')
    .option('--public-key <file>', "the checkpoint key's public half (PEM): also check every signed checkpoint and the retention anchor")
    .action((options: { since?: string; publicKey?: string }) => check(ctx, () => verify(options, ctx)));

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

async function verify(options: { since?: string; publicKey?: string }, ctx: CliContext): Promise<void> {
  const { io } = ctx;
  const since = options.since === undefined ? undefined : parseTimeBound(options.since, '--since');
  const publicKey = options.publicKey === undefined ? undefined : await readPublicKeyFile(path.resolve(io.cwd, options.publicKey));
  const started = Date.now();
  let lastProgress = started;
  const { chain, checkpoints } = await withDecisionLog(ctx, async ({ db }) => {
    const chain = await verifyChain(new PgDecisionQueryStore(db), {
      since,
      onProgress: (checked, total) => {
        if (Date.now() - lastProgress < 2_000) return;
        lastProgress = Date.now();
        io.err(`verified ${checked.toLocaleString('en')} of ${total.toLocaleString('en')} decision records…`);
      },
    });
    const checkpoints = chain.ok && publicKey ? await verifyCheckpoints(new PgDecisionCheckpointStore(db), publicKey, { head: chain.head }) : undefined;
    return { chain, checkpoints };
  });
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  if (!chain.ok) {
    const { broken } = chain;
    io.err(`portcullis: the decision chain is broken at ${broken.id ? `decision ${broken.id} ` : ''}(seq ${broken.seq}): ${broken.problem}; ${chain.checked} records before it verified`);
    ctx.setExitCode(1);
    return;
  }
  if (checkpoints && !checkpoints.ok) {
    io.err(`portcullis: the decision log was tampered with: ${checkpoints.broken.what}: ${checkpoints.broken.problem}; the hash chain itself holds (${chain.checked} records), ${checkpoints.checkpoints} checkpoints before it verified`);
    ctx.setExitCode(1);
    return;
  }
  const signed = checkpoints?.newest
    ? `; ${checkpoints.checkpoints} signed checkpoint${checkpoints.checkpoints === 1 ? ' holds' : 's hold'} (newest: seq ${checkpoints.newest.seq}, signed ${checkpoints.newest.signedAt.toISOString()}; records after it are covered by the chain alone)`
    : '';
  io.out(`verified ${chain.checked} decision record${chain.checked === 1 ? '' : 's'} in ${seconds} s: the chain is intact (head: seq ${chain.head.seq}, hash ${chain.head.hash})${signed}`);
}

async function readPublicKeyFile(file: string): Promise<KeyObject> {
  const pem = await readFile(file, 'utf8').catch((error: NodeJS.ErrnoException) => {
    throw new InputError(`--public-key: cannot read ${file}: ${error.code ?? error.message}`);
  });
  try {
    return readPublicKey(pem, file);
  } catch (error) {
    throw new InputError(`--public-key: ${(error as Error).message}`);
  }
}

function outputFormat(format: string): OutputFormat {
  if (!(FORMATS as readonly string[]).includes(format)) throw new InputError(`--format: must be one of ${FORMATS.join(', ')}`);
  return format as OutputFormat;
}
