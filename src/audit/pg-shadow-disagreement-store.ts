// Appends shadow-policy disagreements to `policy_shadow_disagreements`: the request, both
// policies' revisions and decisions, and the input both were given, so a policy author can
// replay the case against either policy.
import type { Knex } from 'knex';
import { DependencyError } from '../http/errors';
import type { PolicyDecision } from '../authz/policy-engine';

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
  constructor(private readonly db: Knex | Knex.Transaction) {}

  async insertMany(rows: readonly ShadowDisagreement[]): Promise<void> {
    if (rows.length === 0) return;
    try {
      await this.db('policy_shadow_disagreements').insert(
        rows.map((row) => ({
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
          input: JSON.stringify(row.input),
        })),
      );
    } catch (error) {
      throw new DependencyError(`could not write ${rows.length} shadow policy disagreements to PostgreSQL`, { cause: error });
    }
  }
}
