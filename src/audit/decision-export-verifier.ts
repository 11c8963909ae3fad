// `decisions verify --file`: checks an export offline, with no database: every record's hash
// recomputed from its content, every link to the record before, no seq missing, the
// `export_end` line matching the last record (a cut file has none), and the signed checkpoint
// in it against the record it names and, given the public key, its signature.
import type { KeyObject } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import readline from 'node:readline';
import { checkpointText, signatureHolds } from './checkpoint-key';
import { canonicalJson, chainHash, GENESIS_HASH } from './decision-chain';
import { csvRows, EXPORT_CSV_COLUMNS, recordFromCsv, type ExportEnd, type ExportFormat } from './decision-export-file';

export interface ExportVerifyOptions {
  publicKey?: KeyObject | undefined;
  /** A head kept elsewhere: the record at this seq must have this hash. */
  expect?: { seq: number; hash: string } | undefined;
}

export type ExportVerifyResult =
  | {
      ok: true;
      format: ExportFormat;
      records: number;
      firstSeq: number | null;
      head: { seq: number; hash: string } | null;
      /** The export's checkpoint; `signatureChecked` only with a public key. */
      checkpoint: { seq: number; signedAt: string; signatureChecked: boolean } | null;
    }
  | { ok: false; checked: number; broken: { line: number; seq: number | null; problem: string } };

/** Thrown when the file cannot be checked at all (exit 2), as opposed to failing the check. */
export class ExportUnreadableError extends Error {}

interface Item {
  line: number;
  record?: { seq: number; prevHash: string; hash: string; content: Record<string, unknown> };
  end?: ExportEnd;
}

export async function verifyExportFile(file: string, options: ExportVerifyOptions = {}): Promise<ExportVerifyResult> {
  const format = await detectFormat(file);
  let checked = 0;
  const fail = (line: number, seq: number | null, problem: string): ExportVerifyResult => ({
    ok: false,
    checked,
    broken: { line, seq, problem },
  });
  let previous: { seq: number; hash: string } | undefined;
  let firstSeq: number | null = null;
  let end: ExportEnd | undefined;
  let expectedFound = false;
  let endLine = 0;
  let lastLine = 0;
  const items = format === 'ndjson' ? ndjsonItems(file) : csvItems(file);
  try {
    for await (const item of items) {
      if (end) return fail(item.line, item.record?.seq ?? null, 'there is more after the export_end line: lines were appended');
      lastLine = item.line;
      if (item.end) {
        end = item.end;
        endLine = item.line;
        continue;
      }
      const { seq, prevHash, hash, content } = item.record!;
      if (previous && seq !== previous.seq + 1) {
        return fail(
          item.line,
          seq,
          seq > previous.seq + 1
            ? `gap in seq: seq ${previous.seq + 1} is missing before this record (deleted)`
            : `seq ${seq} comes after seq ${previous.seq}: records were reordered or duplicated`,
        );
      }
      if (!previous && seq === 1 && prevHash !== GENESIS_HASH)
        return fail(item.line, seq, 'the first record of the chain must follow the genesis hash (64 zeros)');
      if (chainHash(prevHash, seq, canonicalJson(content)) !== hash)
        return fail(item.line, seq, 'content edited: the hash does not match the record');
      if (previous && prevHash !== previous.hash)
        return fail(item.line, seq, `previous hash mismatch: prev_hash is not the hash of seq ${previous.seq}`);
      if (options.expect && seq === options.expect.seq) {
        if (hash !== options.expect.hash)
          return fail(item.line, seq, `seq ${seq} has hash ${hash}, not the expected ${options.expect.hash}: the chain was rewritten`);
        expectedFound = true;
      }
      firstSeq ??= seq;
      previous = { seq, hash };
      checked += 1;
    }
  } catch (error) {
    if (error instanceof LineError) return fail(error.line, null, error.message);
    throw error;
  }
  if (!end) return fail(lastLine, previous?.seq ?? null, 'the file does not end with its export_end line: it was cut short');
  const head = previous ?? null;
  if (end.records !== checked || end.first_seq !== firstSeq || end.head?.seq !== head?.seq || end.head?.hash !== head?.hash) {
    return fail(
      endLine,
      head?.seq ?? null,
      `the export_end line says ${end.records} records ending at ${end.head ? `seq ${end.head.seq}` : 'none'}, but the file holds ${checked} ending at ${head ? `seq ${head.seq}` : 'none'}: records were removed or added`,
    );
  }
  if (options.expect && !expectedFound) {
    throw new ExportUnreadableError(
      `--expect: seq ${options.expect.seq} is not in this export (seq ${firstSeq ?? '-'} to ${head?.seq ?? '-'})`,
    );
  }
  let checkpoint: { seq: number; signedAt: string; signatureChecked: boolean } | null = null;
  if (end.checkpoint) {
    const signed = end.checkpoint;
    const recorded = await hashInFile(file, format, signed.seq);
    if (recorded !== signed.hash)
      return fail(
        endLine,
        signed.seq,
        `the signed checkpoint of seq ${signed.seq} names hash ${signed.hash}, but the record has ${recorded ?? 'no line'}: the chain was rewritten`,
      );
    if (options.publicKey) {
      const text = checkpointText({ seq: signed.seq, hash: signed.hash, signedAt: new Date(signed.signed_at), prevSeq: signed.prev_seq });
      if (!signatureHolds(options.publicKey, text, signed.signature))
        return fail(
          endLine,
          signed.seq,
          `the signature of the checkpoint of seq ${signed.seq} does not hold: it was edited, or signed with another key (key ${signed.key_id})`,
        );
    }
    checkpoint = { seq: signed.seq, signedAt: signed.signed_at, signatureChecked: options.publicKey !== undefined };
  }
  return { ok: true, format, records: checked, firstSeq, head, checkpoint };
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
    if (start.startsWith(`${EXPORT_CSV_COLUMNS[0]},${EXPORT_CSV_COLUMNS[1]},`)) return 'csv';
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
      yield { line, end: parsed.export_end as ExportEnd };
      continue;
    }
    const { seq, prev_hash: prevHash, hash, ...content } = parsed;
    if (typeof seq !== 'number' || typeof prevHash !== 'string' || typeof hash !== 'string')
      throw new LineError(line, 'not a record: seq, prev_hash or hash is missing');
    // Only a true dry_run is hashed (records from before the column keep their hashes).
    if (content.dry_run === false) delete content.dry_run;
    yield { line, record: { seq, prevHash, hash, content } };
  }
}

async function* csvItems(file: string): AsyncGenerator<Item> {
  let line = 0;
  const endColumn = EXPORT_CSV_COLUMNS.length - 1;
  for await (const cells of csvRows(createReadStream(file, { encoding: 'utf8' }))) {
    line += 1;
    if (line === 1) {
      if (cells.map((cell) => cell.text).join(',') !== EXPORT_CSV_COLUMNS.join(','))
        throw new LineError(line, `the header is not ${EXPORT_CSV_COLUMNS.join(',')}`);
      continue;
    }
    if (cells.length === 1 && cells[0]!.text === '' && !cells[0]!.quoted) continue;
    const endCell = cells[endColumn];
    if (cells.length === EXPORT_CSV_COLUMNS.length && endCell && endCell.text !== '') {
      let end: unknown;
      try {
        end = JSON.parse(endCell.text);
      } catch {
        throw new LineError(line, 'export_end is not JSON');
      }
      if (typeof end !== 'object' || end === null) throw new LineError(line, 'export_end is not an object');
      yield { line, end: end as ExportEnd };
      continue;
    }
    try {
      yield { line, record: recordFromCsv(cells) };
    } catch (error) {
      throw new LineError(line, `not a record: ${(error as Error).message}`);
    }
  }
}

/** The hash the file gives the record at `seq` (a second pass: checkpoints are named at the end). */
async function hashInFile(file: string, format: ExportFormat, seq: number): Promise<string | undefined> {
  for await (const item of format === 'ndjson' ? ndjsonItems(file) : csvItems(file)) {
    if (item.record?.seq === seq) return item.record.hash;
  }
  return undefined;
}
