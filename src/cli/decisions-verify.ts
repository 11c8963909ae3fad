// `decisions verify`: every hash chain in the database, a line each (with --public-key their
// signed checkpoints, with --expect a head kept elsewhere), or an export file offline (--file).
// Exit 1 names the chain and the record that breaks it; 2 when it could not be checked (check-command.ts).
import type { KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { readPublicKey } from '../audit/chain/checkpoint-key';
import { verifyChain, type ChainResult } from '../audit/chain/decision-chain-verifier';
import { verifyCheckpoints, type CheckpointVerifyResult } from '../audit/chain/decision-checkpoint-verifier';
import { ExportUnreadableError, verifyExportFile, type VerifiedRun } from '../audit/export/decision-export-verifier';
import { PgDecisionCheckpointStore } from '../audit/chain/pg-decision-checkpoint-store';
import { PgDecisionQueryStore } from '../audit/store/pg-decision-query-store';
import { parseTimeBound } from '../audit/store/time-bound';
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
    .option('--expect <[chain:]seq:hash>', "a chain's head kept elsewhere: the chain's record at seq must have this hash")
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
  const { verified, checkpoints, expectation } = await withDecisionLog(ctx, async ({ db }) => {
    const verified = await verifyChain(new PgDecisionQueryStore(db), {
      since,
      onProgress: (checked, total) => {
        if (Date.now() - lastProgress < 2_000) return;
        lastProgress = Date.now();
        io.err(`verified ${checked.toLocaleString('en')} of ${total.toLocaleString('en')} decision records…`);
      },
    });
    const store = new PgDecisionCheckpointStore(db);
    const checkpoints = new Map<string, CheckpointVerifyResult>();
    if (publicKey) {
      for (const chain of verified.chains)
        if (chain.ok) checkpoints.set(chain.chain, await verifyCheckpoints(store, publicKey, { chain: chain.chain, head: chain.head }));
    }
    const expectation = verified.ok && expected ? await compareExpected(expected, verified.chains, store) : undefined;
    return { verified, checkpoints, expectation };
  });
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  let tampered = false;
  for (const chain of verified.chains) {
    if (!chain.ok) {
      const { broken } = chain;
      io.err(
        `portcullis: the decision chain ${chain.chain} is broken at ${broken.id ? `decision ${broken.id} ` : ''}(seq ${broken.seq}): ${broken.problem}; ${chain.checked} records before it verified`,
      );
      tampered = true;
      continue;
    }
    const signed = checkpoints.get(chain.chain);
    if (signed && !signed.ok) {
      io.err(
        `portcullis: the decision log was tampered with: chain ${chain.chain}: ${signed.broken.what}: ${signed.broken.problem}; the hash chain itself holds (${chain.checked} records), ${signed.checkpoints} checkpoints before it verified`,
      );
      tampered = true;
      continue;
    }
    const newest =
      signed?.ok && signed.newest
        ? `; ${signed.checkpoints} signed checkpoint${signed.checkpoints === 1 ? ' holds' : 's hold'} (newest: seq ${signed.newest.seq}, signed ${signed.newest.signedAt.toISOString()}; records after it are covered by the chain alone)`
        : '';
    io.out(
      `chain ${chain.chain}: ${chain.checked} record${chain.checked === 1 ? '' : 's'} intact (head: seq ${chain.head.seq}, hash ${chain.head.hash})${newest}`,
    );
  }
  if (tampered) {
    ctx.setExitCode(1);
    return;
  }
  if (expectation) {
    // A head kept elsewhere that the database can no longer show is a question it cannot answer (2), not a break.
    if (expectation.problem) io.err(`portcullis: ${expectation.problem}`);
    ctx.setExitCode(expectation.exitCode);
    if (expectation.exitCode !== 0) return;
  }
  const held = expected ? `; seq ${expected.seq} of chain ${expectation?.chain ?? '-'} has the expected hash` : '';
  const count = verified.chains.length;
  io.out(
    `verified ${verified.checked} decision record${verified.checked === 1 ? '' : 's'} in ${seconds} s: ${count === 1 ? 'the chain is' : `all ${count} chains are`} intact${held}`,
  );
}

interface Expected {
  chain: string | undefined;
  seq: number;
  hash: string;
}

async function compareExpected(
  expected: Expected,
  chains: readonly ChainResult[],
  store: PgDecisionCheckpointStore,
): Promise<{ exitCode: number; chain?: string; problem?: string }> {
  if (expected.chain === undefined && chains.length !== 1)
    return { exitCode: 2, problem: `--expect: the decision log has ${chains.length} chains; name one (CHAIN:SEQ:HASH)` };
  const chain = expected.chain ?? chains[0]!.chain;
  const found = chains.find((result) => result.chain === chain);
  if (!found) return { exitCode: 1, problem: `the decision log was tampered with: chain ${chain} is gone` };
  const { head } = found;
  if (expected.seq > head.seq) {
    return {
      exitCode: 1,
      problem: `the decision log was tampered with: chain ${chain}'s head is at seq ${head.seq}, behind the expected seq ${expected.seq}: the newest records were removed and the head moved back`,
    };
  }
  const stored = (await store.hashesAt(chain, [expected.seq])).get(expected.seq);
  if (stored === undefined) {
    const anchor = await store.anchor(chain);
    if (expected.seq <= anchor.seq)
      return {
        exitCode: 2,
        problem: `--expect: seq ${expected.seq} of chain ${chain} was removed by retention (the chain now starts after seq ${anchor.seq}); keep a newer head`,
      };
    return { exitCode: 1, problem: `the decision log was tampered with: seq ${expected.seq} is gone from chain ${chain}` };
  }
  if (stored !== expected.hash)
    return {
      exitCode: 1,
      problem: `the decision log was tampered with: seq ${expected.seq} of chain ${chain} has hash ${stored}, not the expected ${expected.hash}: the chain was rewritten`,
    };
  return { exitCode: 0, chain };
}

async function verifyFile(file: string, publicKey: KeyObject | undefined, expected: Expected | undefined, ctx: CliContext): Promise<void> {
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
      `portcullis: the export is broken at line ${broken.line}${broken.seq === null ? '' : ` (seq ${broken.seq})`}: ${broken.problem}; ${broken.chain === null ? '' : `in chain ${broken.chain}, `}${result.checked} records before it verified`,
    );
    ctx.setExitCode(1);
    return;
  }
  if (publicKey && !result.chains.some((run) => run.checkpoint)) {
    throw new InputError(
      '--public-key: the export holds no signed checkpoint (none was signed within its records), so nothing ties it to the key; export a longer window',
    );
  }
  const held = expected ? `; seq ${expected.seq} has the expected hash` : '';
  const describe = (run: VerifiedRun) => {
    const range = run.head ? `seq ${run.firstSeq} to ${run.head.seq}, head hash ${run.head.hash}` : 'no records';
    const start = run.firstSeq !== null && run.firstSeq !== 1 ? `; the first record's prev_hash is trusted` : '';
    const checkpoint = run.checkpoint
      ? `; the signed checkpoint of seq ${run.checkpoint.seq} (signed ${run.checkpoint.signedAt}) ${run.checkpoint.signatureChecked ? 'holds' : 'matches (signature not checked: pass --public-key)'}`
      : '; no signed checkpoint in it';
    return { range, rest: `${start}${checkpoint}` };
  };
  const [only] = result.chains;
  const records = `${result.records} decision record${result.records === 1 ? '' : 's'} in ${path.basename(file)}`;
  if (result.chains.length <= 1) {
    // One chain (one instance wrote the window): one line, as before chains had names.
    const { range, rest } = only ? describe(only) : { range: 'no records', rest: '' };
    io.out(`verified ${records} (${result.format}, ${range}): the export is intact${rest}${held}`);
    return;
  }
  for (const run of result.chains) {
    const { range, rest } = describe(run);
    io.out(`chain ${run.chain}: ${run.records} record${run.records === 1 ? '' : 's'} (${range})${rest}`);
  }
  io.out(`verified ${records} (${result.format}, ${result.chains.length} chains): every chain in it is intact${held}`);
}

function parseExpect(text: string): Expected {
  const match = /^(?:([A-Za-z0-9][A-Za-z0-9._-]{0,62}):)?(\d{1,15}):([0-9a-f]{64})$/i.exec(text.trim());
  if (!match)
    throw new InputError("--expect: must be [CHAIN:]SEQ:HASH, e.g. gw-1:1234:9f86d0…, as `decisions verify` printed a chain's head");
  return { chain: match[1], seq: Number(match[2]), hash: match[3]!.toLowerCase() };
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
