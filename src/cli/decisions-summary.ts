// `decisions summary`: counts of decisions grouped by reason code, action, subject,
// organization, status or policy revision, as a table or JSON. Dry runs are left out unless
// `--dry-run true` asks for them.
import type { Command } from 'commander';
import {
  NoCodeColumnError,
  PgDecisionSummaryStore,
  SUMMARY_COLUMNS,
  type SummaryBy,
  type SummaryRow,
} from '../audit/store/pg-decision-summary-store';
import { InputError } from '../base/errors';
import { COULD_NOT_CHECK } from './check-command';
import type { CliContext } from './cli-context';
import { withDecisionLog } from './decisions-database';
import { filterOptions, parseFilterOptions, resolveUser, type FilterOptions } from './decisions-filter';

const BY = Object.keys(SUMMARY_COLUMNS) as SummaryBy[];

export function registerSummaryCommand(decisions: Command, ctx: CliContext): void {
  filterOptions(
    decisions.command('summary').description('count decisions by reason code, action, subject, org, status or policy revision'),
    { since: '24h' },
  )
    .requiredOption('--by <what>', BY.join('|'))
    .option('--format <format>', 'table|json', 'table')
    .action(async (options: FilterOptions & { by: string; format: string }) => {
      if (!(BY as string[]).includes(options.by)) throw new InputError(`--by: must be one of ${BY.join(', ')}`);
      if (options.format !== 'table' && options.format !== 'json') throw new InputError('--format: must be table or json');
      const by = options.by as SummaryBy;
      const parsed = parseFilterOptions(options, { dryRun: false });
      let rows: SummaryRow[];
      try {
        rows = await withDecisionLog(ctx, async ({ db }) =>
          new PgDecisionSummaryStore(db).counts(await resolveUser(parsed, options.user, db), by),
        );
      } catch (error) {
        if (!(error instanceof NoCodeColumnError)) throw error;
        ctx.io.err(`portcullis: ${error.message}`);
        ctx.setExitCode(COULD_NOT_CHECK);
        return;
      }
      const total = rows.reduce(
        (sum, row) => ({ count: sum.count + row.count, allowed: sum.allowed + row.allowed, denied: sum.denied + row.denied }),
        { count: 0, allowed: 0, denied: 0 },
      );
      if (options.format === 'json') {
        const window = { since: parsed.since?.toISOString() ?? null, until: parsed.until?.toISOString() ?? null };
        ctx.io.out(JSON.stringify({ by, ...window, total, groups: rows }, null, 2));
        return;
      }
      for (const line of summaryTable(by, rows, total)) ctx.io.out(line);
    });
}

function summaryTable(by: SummaryBy, rows: readonly SummaryRow[], total: Omit<SummaryRow, 'key'>): string[] {
  const number = (n: number) => n.toLocaleString('en');
  const cells = [
    [by.toUpperCase(), 'DECISIONS', 'ALLOWED', 'DENIED'],
    ...rows.map((row) => [
      row.key === null ? '-' : String(row.key).replace(/[\r\n\t]+/g, ' '),
      number(row.count),
      number(row.allowed),
      number(row.denied),
    ]),
    ['total', number(total.count), number(total.allowed), number(total.denied)],
  ];
  const widths = [0, 1, 2, 3].map((i) => Math.max(...cells.map((row) => row[i]!.length)));
  return cells.map((row) => row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  '));
}
