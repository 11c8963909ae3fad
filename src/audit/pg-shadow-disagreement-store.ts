// Appends shadow-policy disagreements to `policy_shadow_disagreements`: the request, both
// policies' revisions and decisions, and the input both were given, so a policy author can
// replay the case against either policy. The input is masked with `audit.mask`, as decision
// records are, and rows go in batches under PostgreSQL's 65,535 bind parameters.
import type { Knex } from 'knex';
import { DependencyError } from '../http/errors';
import type { PolicyDecision } from '../authz/policy-engine';
import type { DecisionMask } from './decision-mask';

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
          await trx('policy_shadow_disagreements').insert(values.slice(start, start + ROWS_PER_INSERT)).onConflict('id').ignore();
        }
      });
    } catch (error) {
      throw new DependencyError(`could not write ${rows.length} shadow policy disagreements to PostgreSQL`, { cause: error });
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
