// `decisions verify`: the hash chain in the database (with --public-key its signed
// checkpoints, with --expect a head kept elsewhere), or an export file offline (--file).
// Exit 1 names what breaks it; 2 when it could not be checked (check-command.ts).
import type { KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { readPublicKey } from '../audit/checkpoint-key';
import { verifyChain } from '../audit/decision-chain-verifier';
import { verifyCheckpoints } from '../audit/decision-checkpoint-verifier';
import { ExportUnreadableError, verifyExportFile } from '../audit/decision-export-verifier';
import { PgDecisionCheckpointStore } from '../audit/pg-decision-checkpoint-store';
import { PgDecisionQueryStore } from '../audit/pg-decision-query-store';
import { parseTimeBound } from '../audit/time-bound';
import { InputError } from '../base/errors';
import { check, usageErrorsCouldNotCheck } from './check-command';
import type { CliContext } from './cli-context';
import { withDecisionLog } from './decisions-database';

interface VerifyOptions {
  since?: string;
  publicKey?: string;
  file?: string;
  expect?: string;
}

export function registerVerifyCommand(decisions: Command, ctx: CliContext): void {
  usageErrorsCouldNotCheck(decisions.command('verify'))
    .description(
      'recompute the hash chain (and with --public-key the signed checkpoints); exit 1 naming what breaks it, 2 when it could not be checked',
    )
    .option('--since <time>', 'start at the first record at or after this time (ISO-8601 or 24h, 7d, …), trusting its prev_hash')
    .option('--public-key <file>', "the checkpoint key's public half (PEM): also check every signed checkpoint and the retention anchor")
    .option('--file <export>', 'check an export of `decisions export` offline, without the database')
    .option('--expect <seq:hash>', 'a chain head kept elsewhere: the record at seq must have this hash')
    .action((options: VerifyOptions) => check(ctx, () => verify(options, ctx)));
}

async function verify(options: VerifyOptions, ctx: CliContext): Promise<void> {
  const { io } = ctx;
  const expected = options.expect === undefined ? undefined : parseExpect(options.expect);
  const publicKey = options.publicKey === undefined ? undefined : await readPublicKeyFile(path.resolve(io.cwd, options.publicKey));
  if (options.file !== undefined) {
    if (options.since !== undefined) throw new InputError('--since: an export is verified whole; leave --since out with --file');
    await verifyFile(path.resolve(io.cwd, options.file), publicKey, expected, ctx);
    return;
  }
  const since = options.since === undefined ? undefined : parseTimeBound(options.since, '--since');
  const started = Date.now();
  let lastProgress = started;
  const { chain, checkpoints, expectation } = await withDecisionLog(ctx, async ({ db }) => {
    const chain = await verifyChain(new PgDecisionQueryStore(db), {
      since,
      onProgress: (checked, total) => {
        if (Date.now() - lastProgress < 2_000) return;
        lastProgress = Date.now();
        io.err(`verified ${checked.toLocaleString('en')} of ${total.toLocaleString('en')} decision records…`);
      },
    });
    const store = new PgDecisionCheckpointStore(db);
    const checkpoints = chain.ok && publicKey ? await verifyCheckpoints(store, publicKey, { head: chain.head }) : undefined;
    const expectation = chain.ok && expected ? await compareExpected(expected, chain.head, store) : undefined;
    return { chain, checkpoints, expectation };
  });
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  if (!chain.ok) {
    const { broken } = chain;
    io.err(
      `portcullis: the decision chain is broken at ${broken.id ? `decision ${broken.id} ` : ''}(seq ${broken.seq}): ${broken.problem}; ${chain.checked} records before it verified`,
    );
    ctx.setExitCode(1);
    return;
  }
  if (checkpoints && !checkpoints.ok) {
    io.err(
      `portcullis: the decision log was tampered with: ${checkpoints.broken.what}: ${checkpoints.broken.problem}; the hash chain itself holds (${chain.checked} records), ${checkpoints.checkpoints} checkpoints before it verified`,
    );
    ctx.setExitCode(1);
    return;
  }
  if (expectation) {
    // A head kept elsewhere that the database can no longer show is a question it cannot answer (2), not a break.
    if (expectation.problem) io.err(`portcullis: ${expectation.problem}`);
    ctx.setExitCode(expectation.exitCode);
    if (expectation.exitCode !== 0) return;
  }
  const signed = checkpoints?.newest
    ? `; ${checkpoints.checkpoints} signed checkpoint${checkpoints.checkpoints === 1 ? ' holds' : 's hold'} (newest: seq ${checkpoints.newest.seq}, signed ${checkpoints.newest.signedAt.toISOString()}; records after it are covered by the chain alone)`
    : '';
  const held = expected ? `; seq ${expected.seq} has the expected hash` : '';
  io.out(
    `verified ${chain.checked} decision record${chain.checked === 1 ? '' : 's'} in ${seconds} s: the chain is intact (head: seq ${chain.head.seq}, hash ${chain.head.hash})${signed}${held}`,
  );
}

async function compareExpected(
  expected: { seq: number; hash: string },
  head: { seq: number; hash: string },
  store: PgDecisionCheckpointStore,
): Promise<{ exitCode: number; problem?: string }> {
  if (expected.seq > head.seq) {
    return {
      exitCode: 1,
      problem: `the decision log was tampered with: the chain head is at seq ${head.seq}, behind the expected seq ${expected.seq}: the newest records were removed and the head moved back`,
    };
  }
  const stored = (await store.hashesAt([expected.seq])).get(expected.seq);
  if (stored === undefined) {
    const anchor = await store.anchor();
    if (expected.seq <= anchor.seq)
      return {
        exitCode: 2,
        problem: `--expect: seq ${expected.seq} was removed by retention (the chain now starts after seq ${anchor.seq}); keep a newer head`,
      };
    return { exitCode: 1, problem: `the decision log was tampered with: seq ${expected.seq} is gone from the chain` };
  }
  if (stored !== expected.hash)
    return {
      exitCode: 1,
      problem: `the decision log was tampered with: seq ${expected.seq} has hash ${stored}, not the expected ${expected.hash}: the chain was rewritten`,
    };
  return { exitCode: 0 };
}

async function verifyFile(
  file: string,
  publicKey: KeyObject | undefined,
  expected: { seq: number; hash: string } | undefined,
  ctx: CliContext,
): Promise<void> {
  const { io } = ctx;
  let result;
  try {
    result = await verifyExportFile(file, { publicKey, expect: expected });
  } catch (error) {
    throw error instanceof ExportUnreadableError ? new InputError(error.message) : error;
  }
  if (!result.ok) {
    const { broken } = result;
    io.err(
      `portcullis: the export is broken at line ${broken.line}${broken.seq === null ? '' : ` (seq ${broken.seq})`}: ${broken.problem}; ${result.checked} records before it verified`,
    );
    ctx.setExitCode(1);
    return;
  }
  if (publicKey && !result.checkpoint) {
    throw new InputError(
      '--public-key: the export holds no signed checkpoint (none was signed within its records), so nothing ties it to the key; export a longer window',
    );
  }
  const range = result.head ? `seq ${result.firstSeq} to ${result.head.seq}, head hash ${result.head.hash}` : 'no records';
  const checkpoint = result.checkpoint
    ? `; the signed checkpoint of seq ${result.checkpoint.seq} (signed ${result.checkpoint.signedAt}) ${result.checkpoint.signatureChecked ? 'holds' : 'matches (signature not checked: pass --public-key)'}`
    : '; no signed checkpoint in it';
  const start = result.firstSeq !== null && result.firstSeq !== 1 ? `; the first record's prev_hash is trusted` : '';
  const held = expected ? `; seq ${expected.seq} has the expected hash` : '';
  io.out(
    `verified ${result.records} decision record${result.records === 1 ? '' : 's'} in ${path.basename(file)} (${result.format}, ${range}): the export is intact${start}${checkpoint}${held}`,
  );
}

function parseExpect(text: string): { seq: number; hash: string } {
  const match = /^(\d{1,15}):([0-9a-f]{64})$/i.exec(text.trim());
  if (!match) throw new InputError('--expect: must be SEQ:HASH, e.g. 1234:9f86d0…, as `decisions verify` printed it');
  return { seq: Number(match[1]), hash: match[2]!.toLowerCase() };
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
