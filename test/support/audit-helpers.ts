// Shared by the audit integration tests: decision records appended through the real chained
// store (the built CLI as a real process is in cli-process.ts).
import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import { prepareDecision } from '../../src/audit/chain/decision-chain';
import type { DecisionRecord } from '../../src/audit/decision-record';
import { PgDecisionStore } from '../../src/audit/chain/pg-decision-store';

export function syntheticDecision(n: number, overrides: Partial<DecisionRecord> = {}): DecisionRecord {
  const allow = n % 3 !== 0;
  return {
    id: randomUUID(),
    time: new Date(Date.UTC(2026, 10, 28, 12, 0, 0) + n * 1000),
    requestId: `request-${n}`,
    subject: n % 2 === 0 ? 'alice|sub' : 'bob|sub',
    userId: randomUUID(),
    organization: n % 5 === 0 ? 'globex' : 'acme',
    action: allow ? 'project:read' : 'project:delete',
    resource: { type: 'project', org: 'acme', project: 'api' },
    method: allow ? 'GET' : 'DELETE',
    path: '/orgs/acme/projects/api',
    allow,
    status: allow ? 200 : 403,
    reasons: allow ? ["granted by permission '*' in organization 'acme'"] : ["missing permission 'project:delete' in organization 'acme'"],
    policyRevision: 'rev-test',
    evalLatencyUs: 40 + (n % 17),
    input: {
      action: allow ? 'project:read' : 'project:delete',
      request: { id: `request-${n}` },
      subject: { sub: 'alice|sub', memberships: { acme: { permissions: ['*'] } } },
    },
    ...overrides,
  };
}

/** The chain the helpers append to unless told otherwise (an instance id). */
export const TEST_CHAIN = 'test-instance';

/** Appends `count` synthetic records through the chained store, in batches, to `chain`. */
export async function appendDecisions(
  db: Knex,
  count: number,
  from = 0,
  overrides: (n: number) => Partial<DecisionRecord> = () => ({}),
  chain = TEST_CHAIN,
): Promise<DecisionRecord[]> {
  const store = new PgDecisionStore(db, chain);
  const records = Array.from({ length: count }, (_, i) => syntheticDecision(from + i, overrides(from + i)));
  for (let start = 0; start < records.length; start += 500) await store.append(records.slice(start, start + 500).map(prepareDecision));
  return records;
}
