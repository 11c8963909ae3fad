// Counts of decisions grouped by one column (`decisions summary --by`), with allows and denials
// apart: "denials by reason code in the last hour" without SQL.
import type { Knex } from 'knex';
import { InputError } from '../../base/errors';
import { whereDecisionFilter, type DecisionFilter } from './pg-decision-query-store';

/** What `--by` names, and the column it groups by. */
export const SUMMARY_COLUMNS = {
  code: 'code',
  action: 'action',
  subject: 'subject',
  org: 'organization',
  status: 'status',
  revision: 'policy_revision',
} as const;
export type SummaryBy = keyof typeof SUMMARY_COLUMNS;

export interface SummaryRow {
  /** The column's value; null when records have none (no organization, no code). */
  key: string | number | null;
  count: number;
  allowed: number;
  denied: number;
}

/** Thrown when `--by code` is asked of a log whose records have no reason code yet. */
export class NoCodeColumnError extends InputError {}

export class PgDecisionSummaryStore {
  constructor(private readonly db: Knex) {}

  async counts(filter: DecisionFilter, by: SummaryBy): Promise<SummaryRow[]> {
    const column = SUMMARY_COLUMNS[by];
    if (by === 'code' && !(await this.hasColumn('code'))) {
      throw new NoCodeColumnError(
        '--by code: the decision records have no reason code column yet (it comes with a newer migration); group by action, status, subject, org or revision instead',
      );
    }
    const rows = (await whereDecisionFilter(this.db('decisions'), filter)
      .select({ key: column })
      .count({ count: '*' })
      .select(this.db.raw('count(*) filter (where allow) as allowed'))
      .groupBy(column)
      .orderBy([
        { column: 'count', order: 'desc' },
        { column, order: 'asc', nulls: 'last' },
      ])) as { key: string | number | null; count: string; allowed: string }[];
    return rows.map((row) => ({
      key: row.key,
      count: Number(row.count),
      allowed: Number(row.allowed),
      denied: Number(row.count) - Number(row.allowed),
    }));
  }

  private async hasColumn(name: string): Promise<boolean> {
    const { rows } = await this.db.raw<{ rows: unknown[] }>(
      `select 1 from information_schema.columns where table_schema = current_schema() and table_name = 'decisions' and column_name = ?`,
      [name],
    );
    return rows.length > 0;
  }
}
