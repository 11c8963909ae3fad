// How `decisions query` and `decisions tail` print records: an aligned table for people,
// JSON, NDJSON or CSV (RFC 4180) for tools. CSV cells are safe to open in a spreadsheet.
import type { DecisionSummary } from '../audit/store/pg-decision-query-store';
import { spreadsheetCell } from '../base/spreadsheet-csv';

export const FORMATS = ['table', 'json', 'ndjson', 'csv'] as const;
export type OutputFormat = (typeof FORMATS)[number];

const CSV_COLUMNS: (keyof DecisionSummary)[] = [
  'time',
  'id',
  'seq',
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
  'code',
];

/** `max` clips long values; `stream` is the fixed width a stream (tail) uses, since it cannot measure ahead. */
const TABLE_COLUMNS: { title: string; value: (d: DecisionSummary) => string; max?: number; stream: number }[] = [
  { title: 'TIME', value: (d) => d.time, stream: 24 },
  { title: 'DECISION', value: (d) => d.id, stream: 36 },
  { title: 'SUBJECT', value: (d) => d.subject ?? '-', max: 24, stream: 24 },
  { title: 'ORG', value: (d) => d.organization ?? '-', max: 16, stream: 16 },
  { title: 'ACTION', value: (d) => d.action, stream: 20 },
  { title: 'REQUEST', value: (d) => `${d.method} ${d.path}`, max: 40, stream: 40 },
  { title: 'OUTCOME', value: (d) => `${d.allow ? 'allow' : 'deny'} ${d.status}${d.dry_run ? ' (dry run)' : ''}`, stream: 9 },
  { title: 'CODE', value: (d) => d.code ?? '-', max: 28, stream: 28 },
  { title: 'REASON', value: (d) => d.reasons.join('; ') || '-', max: 60, stream: 0 },
];

/** Prints records; a `stream` (tail) prints the header only with its first batch, at fixed widths. */
export function formatDecisions(
  decisions: readonly DecisionSummary[],
  format: OutputFormat,
  options: { header: boolean; stream?: boolean },
): string[] {
  switch (format) {
    case 'json':
      return [JSON.stringify(decisions, null, 2)];
    case 'ndjson':
      return decisions.map((decision) => JSON.stringify(decision));
    case 'csv':
      return [
        ...(options.header ? [CSV_COLUMNS.join(',')] : []),
        ...decisions.map((decision) => CSV_COLUMNS.map((column) => spreadsheetCell(decision[column])).join(',')),
      ];
    case 'table':
      return table(decisions, options);
  }
}

/**
 * Prints pages of records as they come (`query --all`): the header once, a table at the fixed
 * widths of `tail`, and JSON as one array written an element at a time.
 */
export function decisionStream(
  format: OutputFormat,
  out: (line: string) => void,
): { write(decisions: readonly DecisionSummary[]): void; end(): void } {
  let started = false;
  return {
    write(decisions) {
      if (format === 'json') {
        for (const decision of decisions) {
          out(`${started ? ',' : '['}${JSON.stringify(decision)}`);
          started = true;
        }
        return;
      }
      if (decisions.length === 0) return;
      for (const line of formatDecisions(decisions, format, { header: !started, stream: true })) out(line);
      started = true;
    },
    end() {
      if (format === 'json') out(started ? ']' : '[]');
    },
  };
}

function table(decisions: readonly DecisionSummary[], options: { header: boolean; stream?: boolean }): string[] {
  const cells = decisions.map((decision) => TABLE_COLUMNS.map((column) => clip(column.value(decision), column.max)));
  const widths = options.stream
    ? TABLE_COLUMNS.map((column) => column.stream)
    : TABLE_COLUMNS.map((column, i) => Math.max(column.title.length, ...cells.map((row) => row[i]!.length)));
  const line = (values: string[]) =>
    values
      .map((value, i) => (i === values.length - 1 ? value : value.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [...(options.header ? [line(TABLE_COLUMNS.map((column) => column.title))] : []), ...cells.map(line)];
}

function clip(text: string, max: number | undefined): string {
  const flat = text.replace(/[\r\n\t]+/g, ' ');
  return max !== undefined && flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}
