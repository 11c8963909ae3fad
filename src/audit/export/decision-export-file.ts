// The file `decisions export` writes and `decisions verify --file` reads: for each chain, a
// contiguous run of it, each record with its hashed content, `chain`, `seq` (its position in the
// chain), `prev_hash` and `hash`, ending with an `export_end` line (each run's head, and the
// newest signed checkpoint inside it), as NDJSON or CSV. Both are lossless, so a record's hash
// can be recomputed from the file alone.
import { canonicalJson } from '../chain/decision-chain';
import type { ChainRow } from '../chain/decision-chain-verifier';

/** A signed checkpoint as an export carries it. */
export interface ExportCheckpoint {
  seq: number;
  hash: string;
  signed_at: string;
  prev_seq: number | null;
  key_id: string;
  signature: string;
}

/** One chain's run in an export. */
export interface ExportRun {
  chain: string;
  records: number;
  first_seq: number | null;
  /** The last exported record of the chain: the head of the run. */
  head: { seq: number; hash: string } | null;
  /** The chain's newest signed checkpoint whose seq is in the run, or null. */
  checkpoint: ExportCheckpoint | null;
}

/** The last line of an export. */
export interface ExportEnd {
  records: number;
  /** Every chain's run, in the file's order. */
  chains: ExportRun[];
  exported_at: string;
}

export const EXPORT_FORMATS = ['ndjson', 'csv'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

/** The hashed fields of a record as CSV columns, by how a cell reads back. */
const TEXT = ['id', 'time', 'request_id', 'action', 'method', 'path'] as const;
const NULLABLE_TEXT = ['subject', 'user_id', 'organization', 'policy_revision'] as const;
const JSON_VALUED = ['reasons', 'resource', 'input'] as const;
/** Fields a record holds only when set (so older records keep their hashes): an empty cell is absent. */
const OPTIONAL_TEXT = ['code'] as const;
const OPTIONAL_JSON = ['code_params'] as const;

/**
 * `directory_version`, `code` and `code_params` are empty when the record has none; `more`
 * holds, as one JSON object, any hashed field a newer gateway adds that this version has no
 * column for, so the file stays lossless (empty when there is none).
 */
export const EXPORT_CSV_COLUMNS = [
  'chain',
  'seq',
  'prev_hash',
  'hash',
  'id',
  'time',
  'request_id',
  'subject',
  'user_id',
  'organization',
  'action',
  'method',
  'path',
  'allow',
  'status',
  'reasons',
  'policy_revision',
  'eval_latency_us',
  'dry_run',
  'directory_version',
  'code',
  'code_params',
  'resource',
  'input',
  'more',
  'export_end',
] as const;

/** The content fields the CSV has a column of its own for. */
const COLUMNED = new Set<string>([
  ...TEXT,
  ...NULLABLE_TEXT,
  ...JSON_VALUED,
  ...OPTIONAL_TEXT,
  ...OPTIONAL_JSON,
  'allow',
  'status',
  'eval_latency_us',
  'dry_run',
  'directory_version',
]);

type Content = Record<string, unknown>;

/** One record's line. NDJSON is the canonical content itself with the chain's fields in front. */
export function exportLine(chain: string, row: ChainRow, format: ExportFormat): string {
  if (format === 'ndjson')
    return `{"chain": ${JSON.stringify(chain)}, "seq": ${row.seq}, "prev_hash": ${JSON.stringify(row.prevHash)}, "hash": ${JSON.stringify(row.hash)}, ${row.content.slice(1)}`;
  const content = JSON.parse(row.content) as Content;
  const cell = (column: (typeof EXPORT_CSV_COLUMNS)[number]): string => {
    switch (column) {
      case 'chain':
        return csvCell(chain);
      case 'seq':
        return String(row.seq);
      case 'prev_hash':
        return row.prevHash;
      case 'hash':
        return row.hash;
      case 'export_end':
        return '';
      case 'dry_run':
        return content.dry_run === true ? 'true' : 'false';
      case 'more': {
        const more = Object.entries(content).filter(([key]) => !COLUMNED.has(key));
        return more.length === 0 ? '' : csvCell(canonicalJson(Object.fromEntries(more)));
      }
      case 'reasons':
      case 'resource':
      case 'input':
        return csvCell(canonicalJson(content[column] ?? null));
      case 'code_params':
        return content[column] === undefined ? '' : csvCell(canonicalJson(content[column]));
      default: {
        const value = content[column];
        // The columns left are text, numbers and booleans.
        return value === null || value === undefined ? '' : csvCell(typeof value === 'string' ? value : JSON.stringify(value));
      }
    }
  };
  return EXPORT_CSV_COLUMNS.map(cell).join(',');
}

export function exportHeader(format: ExportFormat): string[] {
  return format === 'csv' ? [EXPORT_CSV_COLUMNS.join(',')] : [];
}

export function exportEndLine(end: ExportEnd, format: ExportFormat): string {
  const json = JSON.stringify({ export_end: end });
  return format === 'ndjson' ? json : `${','.repeat(EXPORT_CSV_COLUMNS.length - 1)}${csvCell(JSON.stringify(end))}`;
}

// A spreadsheet runs a cell that starts like a formula (OWASP "CSV injection"): such a cell,
// and one that starts with the quote itself, gets a leading quote, which reading strips, so
// the file stays lossless. A null is an empty cell; an empty string is `""`.
const GUARDED = /^[=+\-@\t\r']/;

function csvCell(text: string): string {
  const guarded = GUARDED.test(text) ? `'${text}` : text;
  return guarded === '' || /[",\r\n]/.test(guarded) ? `"${guarded.replace(/"/g, '""')}"` : guarded;
}

/** A CSV cell as read: its text, and whether it was quoted (`""` is an empty string, an empty cell null). */
export interface CsvCell {
  text: string;
  quoted: boolean;
}

/** RFC 4180 rows from chunks of text, one row at a time (quoted cells may span lines). */
export async function* csvRows(chunks: AsyncIterable<string> | Iterable<string>): AsyncGenerator<CsvCell[]> {
  let row: CsvCell[] = [];
  let cell = '';
  let quoted = false;
  let inQuotes = false;
  let quoteSeen = false;
  for await (const chunk of chunks) {
    for (let i = 0; i < chunk.length; i++) {
      const c = chunk[i]!;
      if (inQuotes) {
        if (quoteSeen) {
          quoteSeen = false;
          if (c === '"') {
            cell += '"';
            continue;
          }
          inQuotes = false;
        } else if (c === '"') {
          quoteSeen = true;
          continue;
        } else {
          cell += c;
          continue;
        }
      }
      // A lone CR outside quotes can only be the first half of a CRLF row end.
      if (c === '\r') continue;
      if (c === '"' && cell === '' && !quoted) {
        inQuotes = quoted = true;
      } else if (c === ',') {
        row.push({ text: cell, quoted });
        cell = '';
        quoted = false;
      } else if (c === '\n') {
        row.push({ text: cell, quoted });
        yield row;
        row = [];
        cell = '';
        quoted = false;
      } else {
        cell += c;
      }
    }
  }
  if (inQuotes && quoteSeen) inQuotes = false;
  if (cell !== '' || quoted || row.length > 0) {
    if (inQuotes) throw new Error('the file ends inside a quoted cell');
    row.push({ text: cell, quoted });
    yield row;
  }
}

const unguard = (cell: CsvCell) => (cell.text.startsWith("'") ? cell.text.slice(1) : cell.text);

/** A CSV record row back into chain, seq, hashes and content; throws naming the column that does not read. */
export function recordFromCsv(cells: readonly CsvCell[]): { chain: string; seq: number; prevHash: string; hash: string; content: Content } {
  if (cells.length !== EXPORT_CSV_COLUMNS.length) throw new Error(`${cells.length} cells, not ${EXPORT_CSV_COLUMNS.length}`);
  const at = new Map(EXPORT_CSV_COLUMNS.map((column, i) => [column, cells[i]!]));
  const text = (column: (typeof EXPORT_CSV_COLUMNS)[number]) => unguard(at.get(column)!);
  const nullable = (column: (typeof EXPORT_CSV_COLUMNS)[number]) =>
    at.get(column)!.text === '' && !at.get(column)!.quoted ? null : text(column);
  const json = (column: (typeof EXPORT_CSV_COLUMNS)[number]) => {
    try {
      return JSON.parse(text(column)) as unknown;
    } catch {
      throw new Error(`${column} is not JSON`);
    }
  };
  const number = (column: (typeof EXPORT_CSV_COLUMNS)[number], value: string | null) => {
    if (value === null) return null;
    if (!/^-?\d+$/.test(value)) throw new Error(`${column} is not a whole number`);
    return Number(value);
  };
  const boolean = (column: (typeof EXPORT_CSV_COLUMNS)[number]) => {
    const value = text(column);
    if (value !== 'true' && value !== 'false') throw new Error(`${column} is not true or false`);
    return value === 'true';
  };
  const content: Content = {};
  for (const column of TEXT) content[column] = text(column);
  for (const column of NULLABLE_TEXT) content[column] = nullable(column);
  for (const column of JSON_VALUED) content[column] = json(column);
  content.allow = boolean('allow');
  content.status = number('status', text('status'));
  content.eval_latency_us = number('eval_latency_us', nullable('eval_latency_us'));
  if (boolean('dry_run')) content.dry_run = true;
  const directoryVersion = number('directory_version', nullable('directory_version'));
  if (directoryVersion !== null) content.directory_version = directoryVersion;
  for (const column of OPTIONAL_TEXT) if (nullable(column) !== null) content[column] = text(column);
  for (const column of OPTIONAL_JSON) if (nullable(column) !== null) content[column] = json(column);
  if (nullable('more') !== null) {
    const more = json('more');
    if (typeof more !== 'object' || more === null || Array.isArray(more)) throw new Error('more is not a JSON object');
    for (const [key, value] of Object.entries(more)) {
      if (COLUMNED.has(key)) throw new Error(`more repeats ${key}`);
      content[key] = value;
    }
  }
  return { chain: text('chain'), seq: number('seq', text('seq'))!, prevHash: text('prev_hash'), hash: text('hash'), content };
}
