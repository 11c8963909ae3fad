// `decisions export`: a time window of the decision log as NDJSON or CSV that can be verified
// offline (`decisions verify --file`): chain by chain, every record with `chain`, `seq`,
// `prev_hash` and `hash`, ending with each run's head and the newest signed checkpoint in it.
// Streams page by page.
import type { Command } from 'commander';
import {
  EXPORT_FORMATS,
  exportEndLine,
  exportHeader,
  exportLine,
  type ExportEnd,
  type ExportFormat,
  type ExportRun,
} from '../audit/export/decision-export-file';
import { PgDecisionExportStore } from '../audit/export/pg-decision-export-store';
import { parseTimeBound } from '../audit/store/time-bound';
import { InputError } from '../base/errors';
import type { CliContext } from './cli-context';
import { withDecisionLog } from './decisions-database';

const PAGE = 1000;

export function registerExportCommand(decisions: Command, ctx: CliContext): void {
  decisions
    .command('export')
    .description('print every record of a time window with its place in the hash chain, to verify offline with `decisions verify --file`')
    .requiredOption('--since <time>', 'ISO-8601 time (UTC unless it has an offset) or a duration back from now (24h, 7d)')
    .option('--until <time>', 'ISO-8601 time or a duration back from now (default: now)')
    .option('--format <format>', EXPORT_FORMATS.join('|'), 'ndjson')
    .action(async (options: { since: string; until?: string; format: string }) => {
      if (!(EXPORT_FORMATS as readonly string[]).includes(options.format))
        throw new InputError(`--format: must be one of ${EXPORT_FORMATS.join(', ')}`);
      const format = options.format as ExportFormat;
      const now = new Date();
      const since = parseTimeBound(options.since, '--since', now);
      const until = options.until === undefined ? undefined : parseTimeBound(options.until, '--until', now);
      const { io } = ctx;
      await withDecisionLog(ctx, async ({ db }) => {
        const store = new PgDecisionExportStore(db);
        for (const line of exportHeader(format)) io.out(line);
        const end: ExportEnd = { records: 0, chains: [], exported_at: now.toISOString() };
        for (const { chain, first, last } of await store.chainRanges(since, until)) {
          const run: ExportRun = { chain, records: 0, first_seq: first, head: null, checkpoint: null };
          for (let after = first - 1; after < last; after += PAGE) {
            const rows = await store.page(chain, after, Math.min(last, after + PAGE));
            for (const row of rows) io.out(exportLine(chain, row, format));
            run.records += rows.length;
            const newest = rows[rows.length - 1];
            if (newest) run.head = { seq: newest.seq, hash: newest.hash };
            await io.drain?.();
          }
          run.checkpoint = await store.newestCheckpoint(chain, first, last);
          end.records += run.records;
          end.chains.push(run);
        }
        io.out(exportEndLine(end, format));
      });
    });
}
