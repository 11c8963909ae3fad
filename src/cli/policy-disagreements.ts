// `policy disagreements`: the requests on which the shadow policy (policy.shadow) and the active
// one disagreed, newest first, read from PostgreSQL like the `decisions` commands (a running
// demo's embedded database included), as a table for people or JSON for tools.
import type { Command } from 'commander';
import { MAX_DISAGREEMENT_PAGE, PgShadowDisagreementStore, type DisagreementSummary } from '../audit/store/pg-shadow-disagreement-store';
import { InputError } from '../base/errors';
import type { CliContext } from './cli-context';
import { withDecisionLog } from './decisions-database';

const FORMATS = ['table', 'json'] as const;

export function registerPolicyDisagreementsCommand(policy: Command, ctx: CliContext): void {
  policy
    .command('disagreements')
    .description('list the requests the shadow policy (policy.shadow) judged differently, newest first')
    .option('--limit <n>', 'most rows to print', '50')
    .option('--format <format>', FORMATS.join('|'), 'table')
    .action(async (options: { limit: string; format: string }) => {
      const limit = Number(options.limit);
      if (!/^\d+$/.test(options.limit) || limit < 1) throw new InputError('--limit: must be a whole number above 0');
      if (!(FORMATS as readonly string[]).includes(options.format)) throw new InputError(`--format: must be one of ${FORMATS.join(', ')}`);
      await withDecisionLog(ctx, async ({ db }) => {
        const store = new PgShadowDisagreementStore(db);
        const found: DisagreementSummary[] = [];
        let more = false;
        let before: string | undefined;
        do {
          const page = (await store.list({ limit: Math.min(MAX_DISAGREEMENT_PAGE, limit - found.length), before }))!;
          found.push(...page.disagreements);
          more = page.more;
          before = found[found.length - 1]?.id;
        } while (more && found.length < limit);
        if (options.format === 'json') ctx.io.out(JSON.stringify(found, null, 2));
        else for (const line of disagreementTable(found)) ctx.io.out(line);
        if (more) ctx.io.err(`${found.length.toLocaleString('en')} shown; older ones remain: --limit N`);
        else if (found.length === 0)
          ctx.io.err('no disagreements recorded (policy.shadow.source sets a shadow policy; `npm start -- --shadow DIR` in the demo)');
      });
    });
}

const COLUMNS: { title: string; value: (d: DisagreementSummary) => string }[] = [
  { title: 'TIME', value: (d) => d.time },
  { title: 'DECISION', value: (d) => d.decision_id },
  { title: 'SUBJECT', value: (d) => d.subject ?? '-' },
  { title: 'REQUEST', value: (d) => `${d.method} ${d.path}` },
  { title: 'ACTIVE', value: (d) => outcome(d.active) },
  { title: 'SHADOW', value: (d) => outcome(d.shadow) },
  { title: 'SHADOW REASON', value: (d) => d.shadow.reasons.join('; ').replace(/[\r\n\t]+/g, ' ') || '-' },
];

function disagreementTable(rows: readonly DisagreementSummary[]): string[] {
  const cells = rows.map((row) => COLUMNS.map((column) => column.value(row)));
  const widths = COLUMNS.map((column, i) => Math.max(column.title.length, ...cells.map((row) => row[i]!.length)));
  const line = (values: string[]) =>
    values
      .map((value, i) => (i === values.length - 1 ? value : value.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(COLUMNS.map((column) => column.title)), ...cells.map(line)];
}

function outcome(side: DisagreementSummary['active']): string {
  return `${side.allow ? 'allow' : 'deny'} ${side.status}`;
}
