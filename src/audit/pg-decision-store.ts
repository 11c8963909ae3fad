// Appends decision records to the `decisions` table. A batch is one multi-row INSERT, so a
// batch is written entirely or not at all and a retry never leaves half of it behind.
import type { Knex } from 'knex';
import { DependencyError } from '../http/errors';
import type { DecisionRecord } from './decision-record';

export interface DecisionStore {
  insertMany(records: readonly DecisionRecord[]): Promise<void>;
}

// PostgreSQL accepts at most 65,535 bind parameters per statement; 16 columns a row.
const MAX_ROWS_PER_INSERT = 4000;

function toRow(record: DecisionRecord): Record<string, unknown> {
  return {
    id: record.id,
    time: record.time,
    request_id: record.requestId,
    subject: record.subject,
    user_id: record.userId,
    organization: record.organization,
    action: record.action,
    // Serialized here: node-pg would turn a JS array into a PostgreSQL array, not JSON.
    resource: JSON.stringify(record.resource),
    method: record.method,
    path: record.path,
    allow: record.allow,
    status: record.status,
    reasons: record.reasons,
    policy_revision: record.policyRevision,
    eval_latency_us: record.evalLatencyUs,
    input: record.input === undefined || record.input === null ? null : JSON.stringify(record.input),
  };
}

export class PgDecisionStore implements DecisionStore {
  constructor(private readonly db: Knex | Knex.Transaction) {}

  async insertMany(records: readonly DecisionRecord[]): Promise<void> {
    if (records.length === 0) return;
    const rows = records.map(toRow);
    try {
      if (rows.length <= MAX_ROWS_PER_INSERT) {
        await this.db('decisions').insert(rows);
        return;
      }
      await this.db.transaction(async (trx) => {
        for (let start = 0; start < rows.length; start += MAX_ROWS_PER_INSERT) {
          await trx('decisions').insert(rows.slice(start, start + MAX_ROWS_PER_INSERT));
        }
      });
    } catch (error) {
      throw new DependencyError(`could not write ${records.length} decision records to PostgreSQL`, { cause: error });
    }
  }
}
