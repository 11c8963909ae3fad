// `decisions verify --file`: checks an export offline, with no database: chain by chain, every
// record's hash recomputed from its content and chain, every link to the record before, no
// position missing, the `export_end` line matching each run's last record (a cut file has
// none), and each signed checkpoint in it against the record it names and, given the public
// key, its signature.
import type { KeyObject } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import readline from 'node:readline';
import { checkpointText, signatureHolds } from '../chain/checkpoint-key';
import { canonicalJson, chainHash, GENESIS_HASH, LEGACY_CHAIN } from '../chain/decision-chain';
import { csvRows, EXPORT_CSV_COLUMNS, recordFromCsv, type ExportEnd, type ExportFormat, type ExportRun } from './decision-export-file';

export interface ExportVerifyOptions {
  publicKey?: KeyObject | undefined;
  /** A head kept elsewhere: the chain's record at this seq must have this hash (no chain: the export's only one). */
  expect?: { chain?: string | undefined; seq: number; hash: string } | undefined;
}

/** One chain's run as verified. */
export interface VerifiedRun {
  chain: string;
  records: number;
  firstSeq: number | null;
  head: { seq: number; hash: string } | null;
  /** The run's checkpoint; `signatureChecked` only with a public key. */
  checkpoint: { seq: number; signedAt: string; signatureChecked: boolean } | null;
}

export type ExportVerifyResult =
  | { ok: true; format: ExportFormat; records: number; chains: VerifiedRun[] }
  | { ok: false; checked: number; broken: { line: number; chain: string | null; seq: number | null; problem: string } };

/** Thrown when the file cannot be checked at all (exit 2), as opposed to failing the check. */
export class ExportUnreadableError extends Error {}

interface ExportedRecord {
  chain: string;
  seq: number;
  prevHash: string;
  hash: string;
  content: Record<string, unknown>;
}

interface Item {
  line: number;
  record?: ExportedRecord;
  end?: ExportEnd;
}

export async function verifyExportFile(file: string, options: ExportVerifyOptions = {}): Promise<ExportVerifyResult> {
  const format = await detectFormat(file);
  let checked = 0;
  const fail = (line: number, chain: string | null, seq: number | null, problem: string): ExportVerifyResult => ({
    ok: false,
    checked,
    broken: { line, chain, seq, problem },
  });
  const runs: VerifiedRun[] = [];
  let run: VerifiedRun | undefined;
  let previous: { seq: number; hash: string } | undefined;
  let end: ExportEnd | undefined;
  let expectedFound = false;
  let endLine = 0;
  let lastLine = 0;
  const items = format === 'ndjson' ? ndjsonItems(file) : csvItems(file);
  try {
    for await (const item of items) {
      if (end)
        return fail(
          item.line,
          item.record?.chain ?? null,
          item.record?.seq ?? null,
          'there is more after the export_end line: lines were appended',
        );
      lastLine = item.line;
      if (item.end) {
        end = item.end;
        endLine = item.line;
        continue;
      }
      const { chain, seq, prevHash, hash, content } = item.record!;
      if (run?.chain !== chain) {
        if (runs.some((earlier) => earlier.chain === chain))
          return fail(item.line, chain, seq, `the records of chain ${chain} are not together: lines were moved`);
        run = { chain, records: 0, firstSeq: null, head: null, checkpoint: null };
        runs.push(run);
        previous = undefined;
      }
      if (previous && seq !== previous.seq + 1) {
        return fail(
          item.line,
          chain,
          seq,
          seq > previous.seq + 1
            ? `gap in seq: seq ${previous.seq + 1} is missing before this record (deleted)`
            : `seq ${seq} comes after seq ${previous.seq}: records were reordered or duplicated`,
        );
      }
      if (!previous && seq === 1 && prevHash !== GENESIS_HASH)
        return fail(item.line, chain, seq, 'the first record of the chain must follow the genesis hash (64 zeros)');
      if (chainHash(prevHash, chain, seq, canonicalJson(content)) !== hash)
        return fail(item.line, chain, seq, 'content edited: the hash does not match the record (or it was moved from another chain)');
      if (previous && prevHash !== previous.hash)
        return fail(item.line, chain, seq, `previous hash mismatch: prev_hash is not the hash of seq ${previous.seq}`);
      if (options.expect && chain === (options.expect.chain ?? chain) && seq === options.expect.seq) {
        if (hash !== options.expect.hash)
          return fail(
            item.line,
            chain,
            seq,
            `seq ${seq} has hash ${hash}, not the expected ${options.expect.hash}: the chain was rewritten`,
          );
        expectedFound = true;
      }
      run.firstSeq ??= seq;
      run.records += 1;
      previous = { seq, hash };
      run.head = previous;
      checked += 1;
    }
  } catch (error) {
    if (error instanceof LineError) return fail(error.line, null, null, error.message);
    throw error;
  }
  if (!end)
    return fail(lastLine, run?.chain ?? null, previous?.seq ?? null, 'the file does not end with its export_end line: it was cut short');
  const listed = Array.isArray(end.chains) ? end.chains : [];
  const describe = (runsSeen: readonly { chain: string; records: number; head: { seq: number } | null }[]) =>
    runsSeen.map((seen) => `${seen.chain}: ${seen.records} ending at ${seen.head ? `seq ${seen.head.seq}` : 'none'}`).join(', ') ||
    'no records';
  const same =
    end.records === checked &&
    listed.length === runs.length &&
    listed.every((claimed, i) => {
      const seen = runs[i]!;
      return (
        claimed.chain === seen.chain &&
        claimed.records === seen.records &&
        claimed.first_seq === seen.firstSeq &&
        claimed.head?.seq === seen.head?.seq &&
        claimed.head?.hash === seen.head?.hash
      );
    });
  if (!same) {
    return fail(
      endLine,
      null,
      null,
      `the export_end line says ${end.records} records (${describe(listed)}), but the file holds ${checked} (${describe(runs)}): records were removed or added`,
    );
  }
  if (options.expect?.chain === undefined && options.expect && runs.length > 1)
    throw new ExportUnreadableError(`--expect: the export holds ${runs.length} chains; name one (CHAIN:SEQ:HASH)`);
  if (options.expect && !expectedFound) {
    const wanted = options.expect.chain ?? runs[0]?.chain;
    const inFile = runs.find((seen) => seen.chain === wanted);
    throw new ExportUnreadableError(
      `--expect: seq ${options.expect.seq} is not in this export (${inFile ? `chain ${inFile.chain}: seq ${inFile.firstSeq ?? '-'} to ${inFile.head?.seq ?? '-'}` : `no records of chain ${wanted ?? '-'}`})`,
    );
  }
  for (const [i, claimed] of listed.entries()) {
    const broken = await checkCheckpoint(file, format, claimed, options.publicKey);
    if (broken) return fail(endLine, claimed.chain, claimed.checkpoint?.seq ?? null, broken);
    const signed = claimed.checkpoint;
    runs[i]!.checkpoint = signed
      ? { seq: signed.seq, signedAt: signed.signed_at, signatureChecked: options.publicKey !== undefined }
      : null;
  }
  return { ok: true, format, records: checked, chains: runs };
}

/** What is wrong with the run's checkpoint, if anything. */
async function checkCheckpoint(
  file: string,
  format: ExportFormat,
  run: ExportRun,
  publicKey: KeyObject | undefined,
): Promise<string | undefined> {
  const signed = run.checkpoint;
  if (!signed) return undefined;
  const recorded = await hashInFile(file, format, run.chain, signed.seq);
  if (recorded !== signed.hash)
    return `the signed checkpoint of seq ${signed.seq} names hash ${signed.hash}, but the record has ${recorded ?? 'no line'}: the chain was rewritten`;
  if (publicKey) {
    const text = checkpointText({
      chain: run.chain,
      seq: signed.seq,
      hash: signed.hash,
      signedAt: new Date(signed.signed_at),
      prevSeq: signed.prev_seq,
    });
    if (!signatureHolds(publicKey, text, signed.signature))
      return `the signature of the checkpoint of seq ${signed.seq} does not hold: it was edited, or signed with another key (key ${signed.key_id})`;
  }
  return undefined;
}

/** The CSV header of exports from before chains had names. */
const LEGACY_CSV_COLUMNS = EXPORT_CSV_COLUMNS.filter((column) => column !== 'chain');

function parseEnd(line: number, text: string): object {
  let end: unknown;
  try {
    end = JSON.parse(text);
  } catch {
    throw new LineError(line, 'export_end is not JSON');
  }
  if (typeof end !== 'object' || end === null) throw new LineError(line, 'export_end is not an object');
  return end;
}

/** An export_end as this version reads it: one from before chains had names describes one run, of the legacy chain. */
function endOf(end: object): ExportEnd {
  if ('chains' in end) return end as ExportEnd;
  const single = end as Omit<ExportRun, 'chain'> & { exported_at: string };
  const run: ExportRun = {
    chain: LEGACY_CHAIN,
    records: single.records,
    first_seq: single.first_seq,
    head: single.head,
    checkpoint: single.checkpoint,
  };
  return { records: single.records, chains: single.first_seq === null ? [] : [run], exported_at: single.exported_at };
}

class LineError extends Error {
  constructor(
    readonly line: number,
    message: string,
  ) {
    super(message);
  }
}

async function detectFormat(file: string): Promise<ExportFormat> {
  let handle;
  try {
    handle = await open(file, 'r');
  } catch (error) {
    throw new ExportUnreadableError(`--file: cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  try {
    const { buffer, bytesRead } = await handle.read(Buffer.alloc(64), 0, 64, 0);
    const start = buffer.subarray(0, bytesRead).toString('utf8');
    if (
      start.startsWith(`${EXPORT_CSV_COLUMNS[0]},${EXPORT_CSV_COLUMNS[1]},`) ||
      start.startsWith(`${LEGACY_CSV_COLUMNS.slice(0, 2).join(',')},`)
    )
      return 'csv';
    if (start.startsWith('{')) return 'ndjson';
    throw new ExportUnreadableError(`--file: ${file} is not a decisions export (NDJSON or CSV from \`portcullis decisions export\`)`);
  } finally {
    await handle.close();
  }
}

async function* ndjsonItems(file: string): AsyncGenerator<Item> {
  const lines = readline.createInterface({ input: createReadStream(file, { encoding: 'utf8' }), crlfDelay: Infinity });
  let line = 0;
  for await (const text of lines) {
    line += 1;
    if (text.trim() === '') continue;
    let parsed: Record<string, unknown>;
    try {
      parsed = JSON.parse(text) as Record<string, unknown>;
    } catch {
      throw new LineError(line, 'not JSON');
    }
    if ('export_end' in parsed) {
      if (typeof parsed.export_end !== 'object' || parsed.export_end === null) throw new LineError(line, 'export_end is not an object');
      yield { line, end: endOf(parsed.export_end) };
      continue;
    }
    // An export from before chains had names has no chain: its records are the legacy chain's.
    const { chain = LEGACY_CHAIN, seq, prev_hash: prevHash, hash, ...content } = parsed;
    if (typeof chain !== 'string' || typeof seq !== 'number' || typeof prevHash !== 'string' || typeof hash !== 'string')
      throw new LineError(line, 'not a record: chain, seq, prev_hash or hash is missing');
    // Only a true dry_run is hashed (records from before the column keep their hashes).
    if (content.dry_run === false) delete content.dry_run;
    yield { line, record: { chain, seq, prevHash, hash, content } };
  }
}

async function* csvItems(file: string): AsyncGenerator<Item> {
  let line = 0;
  const endColumn = EXPORT_CSV_COLUMNS.length - 1;
  /** An export from before chains had names: no chain column, every record the legacy chain's. */
  let legacy = false;
  for await (const read of csvRows(createReadStream(file, { encoding: 'utf8' }))) {
    line += 1;
    if (line === 1) {
      const header = read.map((cell) => cell.text).join(',');
      legacy = header === LEGACY_CSV_COLUMNS.join(',');
      if (!legacy && header !== EXPORT_CSV_COLUMNS.join(','))
        throw new LineError(line, `the header is not ${EXPORT_CSV_COLUMNS.join(',')}`);
      continue;
    }
    if (read.length === 1 && read[0]!.text === '' && !read[0]!.quoted) continue;
    const cells = legacy ? [{ text: LEGACY_CHAIN, quoted: false }, ...read] : read;
    if (legacy && cells.length === EXPORT_CSV_COLUMNS.length && cells[endColumn]!.text !== '') {
      yield { line, end: endOf(parseEnd(line, cells[endColumn]!.text)) };
      continue;
    }
    const endCell = cells[endColumn];
    if (cells.length === EXPORT_CSV_COLUMNS.length && endCell && endCell.text !== '') {
      yield { line, end: endOf(parseEnd(line, endCell.text)) };
      continue;
    }
    try {
      yield { line, record: recordFromCsv(cells) };
    } catch (error) {
      throw new LineError(line, `not a record: ${(error as Error).message}`);
    }
  }
}

/** The hash the file gives the chain's record at `seq` (a second pass: checkpoints are named at the end). */
async function hashInFile(file: string, format: ExportFormat, chain: string, seq: number): Promise<string | undefined> {
  for await (const item of format === 'ndjson' ? ndjsonItems(file) : csvItems(file)) {
    if (item.record?.chain === chain && item.record.seq === seq) return item.record.hash;
  }
  return undefined;
}
