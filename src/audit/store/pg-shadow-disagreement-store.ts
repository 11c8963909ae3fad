// Appends shadow-policy disagreements to `policy_shadow_disagreements`: the request, both
// policies' revisions and decisions, and the input both were given, so a policy author can
// replay the case against either policy. The input is masked with `audit.mask`, as decision
// records are, and rows go in batches under PostgreSQL's 65,535 bind parameters. Read back
// newest first, a page at a time (admin API, `portcullis policy disagreements`).
import type { Knex } from 'knex';
import { isUuid } from '../../db/uuid';
import { DependencyError } from '../../base/errors';
import type { PolicyDecision } from '../../authz/policy-engine';
import type { DecisionMask } from '../recording/decision-mask';

/** 18 columns a row: 1,000 rows are 18,000 parameters, well under the limit. */
const ROWS_PER_INSERT = 1000;

export interface ShadowDisagreement {
  id: string;
  time: Date;
  /** The decision the active policy made (decisions.id). */
  decisionId: string;
  requestId: string;
  subject: string | null;
  organization: string | null;
  action: string;
  method: string;
  path: string;
  active: { revision: string; decision: PolicyDecision };
  shadow: { revision: string; decision: PolicyDecision };
  input: unknown;
}

export interface ShadowDisagreementStore {
  insertMany(rows: readonly ShadowDisagreement[]): Promise<void>;
}

/** Most rows one page carries. */
export const MAX_DISAGREEMENT_PAGE = 1000;

/** One disagreement as the admin API and the CLI show it (the input stays in the table; decision_id leads to the record). */
export interface DisagreementSummary {
  id: string;
  time: string;
  decision_id: string;
  request_id: string;
  subject: string | null;
  organization: string | null;
  action: string;
  method: string;
  path: string;
  active: { revision: string; allow: boolean; status: number; reasons: string[] };
  shadow: { revision: string; allow: boolean; status: number; reasons: string[] };
}

export interface DisagreementPage {
  disagreements: DisagreementSummary[];
  /** More rows are older than the last one. */
  more: boolean;
}

export class PgShadowDisagreementStore implements ShadowDisagreementStore {
  constructor(
    private readonly db: Knex | Knex.Transaction,
    private readonly options: { mask?: DecisionMask } = {},
  ) {}

  /**
   * All rows or none, in one transaction (a retry after a failure never meets half of them);
   * an id already stored is passed over, so a retry after a lost commit acknowledgement is harmless.
   */
  async insertMany(rows: readonly ShadowDisagreement[]): Promise<void> {
    if (rows.length === 0) return;
    const values = rows.map((row) => this.columns(row));
    try {
      await this.db.transaction(async (trx) => {
        for (let start = 0; start < values.length; start += ROWS_PER_INSERT) {
          await trx('policy_shadow_disagreements')
            .insert(values.slice(start, start + ROWS_PER_INSERT))
            .onConflict('id')
            .ignore();
        }
      });
    } catch (error) {
      throw new DependencyError(`could not write ${rows.length} shadow policy disagreements to PostgreSQL`, { cause: error });
    }
  }

  /**
   * Newest first (time, then id); `before` is the id of the last row of the previous page.
   * Undefined when `before` names no stored row (a cursor this store never gave).
   */
  async list(options: { limit: number; before?: string | undefined }): Promise<DisagreementPage | undefined> {
    const limit = Math.min(Math.max(1, options.limit), MAX_DISAGREEMENT_PAGE);
    try {
      const query = this.db('policy_shadow_disagreements')
        .select<DisagreementRow[]>(SUMMARY_COLUMNS)
        .orderBy([
          { column: 'time', order: 'desc' },
          { column: 'id', order: 'desc' },
        ])
        .limit(limit + 1);
      if (options.before !== undefined) {
        if (!isUuid(options.before) || !(await this.db('policy_shadow_disagreements').first('id').where({ id: options.before })))
          return undefined;
        query.whereRaw('(time, id) < (select time, id from policy_shadow_disagreements where id = ?)', [options.before]);
      }
      const rows = await query;
      return { disagreements: rows.slice(0, limit).map(summary), more: rows.length > limit };
    } catch (error) {
      throw new DependencyError('the shadow policy disagreements could not be read from PostgreSQL', { cause: error });
    }
  }

  private columns(row: ShadowDisagreement): Record<string, unknown> {
    const input = this.options.mask ? this.options.mask.applyToInput(row.input) : row.input;
    return {
      id: row.id,
      time: row.time,
      decision_id: row.decisionId,
      request_id: row.requestId,
      subject: row.subject,
      organization: row.organization,
      action: row.action,
      method: row.method,
      path: row.path,
      active_revision: row.active.revision,
      active_allow: row.active.decision.allow,
      active_status: row.active.decision.status,
      active_reasons: row.active.decision.reasons,
      shadow_revision: row.shadow.revision,
      shadow_allow: row.shadow.decision.allow,
      shadow_status: row.shadow.decision.status,
      shadow_reasons: row.shadow.decision.reasons,
      input: JSON.stringify(input),
    };
  }
}

const SUMMARY_COLUMNS = [
  'id',
  'time',
  'decision_id',
  'request_id',
  'subject',
  'organization',
  'action',
  'method',
  'path',
  'active_revision',
  'active_allow',
  'active_status',
  'active_reasons',
  'shadow_revision',
  'shadow_allow',
  'shadow_status',
  'shadow_reasons',
];

interface DisagreementRow {
  id: string;
  time: Date;
  decision_id: string;
  request_id: string;
  subject: string | null;
  organization: string | null;
  action: string;
  method: string;
  path: string;
  active_revision: string;
  active_allow: boolean;
  active_status: number;
  active_reasons: string[];
  shadow_revision: string;
  shadow_allow: boolean;
  shadow_status: number;
  shadow_reasons: string[];
}

function summary(row: DisagreementRow): DisagreementSummary {
  return {
    id: row.id,
    time: row.time.toISOString(),
    decision_id: row.decision_id,
    request_id: row.request_id,
    subject: row.subject,
    organization: row.organization,
    action: row.action,
    method: row.method,
    path: row.path,
    active: { revision: row.active_revision, allow: row.active_allow, status: row.active_status, reasons: row.active_reasons },
    shadow: { revision: row.shadow_revision, allow: row.shadow_allow, status: row.shadow_status, reasons: row.shadow_reasons },
  };
}
