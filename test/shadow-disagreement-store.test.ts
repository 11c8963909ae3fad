// The shadow-disagreement writer against a real PostgreSQL: a backlog larger than one INSERT
// can carry (65,535 bind parameters) is written whole, and the stored input is masked with
// `audit.mask` like a decision record's.
import { randomUUID } from 'node:crypto';
import { DecisionMask } from '../src/audit/recording/decision-mask';
import { PgShadowDisagreementStore, type ShadowDisagreement } from '../src/audit/store/pg-shadow-disagreement-store';
import { createTestDatabase, type TestDatabase } from './support/test-database';

let database: TestDatabase;

beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => database?.drop());

function disagreement(n: number): ShadowDisagreement {
  return {
    id: randomUUID(),
    time: new Date(Date.UTC(2026, 10, 30, 0, 0, 0, n)),
    decisionId: randomUUID(),
    requestId: `r-${n}`,
    subject: 'alice|sub',
    organization: 'acme',
    action: 'project:read',
    method: 'GET',
    path: '/orgs/acme/projects',
    active: { revision: 'sha256:active', decision: { allow: true, status: 200, reasons: [] } },
    shadow: { revision: 'sha256:shadow', decision: { allow: false, status: 403, reasons: ['no'] } },
    input: { n, request: { headers: { cookie: 'session=secret' } }, subject: { email: 'alice@example.com', id: 'u-1' } },
  };
}

describe('PgShadowDisagreementStore', () => {
  it('writes a backlog of more than 5,000 disagreements (more than one INSERT can carry) in one go', async () => {
    const rows = Array.from({ length: 5_200 }, (_, n) => disagreement(n));
    await new PgShadowDisagreementStore(database.db).insertMany(rows);
    expect(
      await database
        .db('policy_shadow_disagreements')
        .whereIn(
          'request_id',
          rows.map((row) => row.requestId),
        )
        .count({ n: '*' }),
    ).toEqual([{ n: '5200' }]);
    // Writing the same rows again (a retry after a lost acknowledgement) adds nothing and does not fail.
    await new PgShadowDisagreementStore(database.db).insertMany(rows.slice(0, 10));
    expect(await database.db('policy_shadow_disagreements').count({ n: '*' })).toEqual([{ n: '5200' }]);
  });

  it('stores the input with the audit.mask fields erased', async () => {
    const row = { ...disagreement(1), requestId: 'masked' };
    await new PgShadowDisagreementStore(database.db, { mask: new DecisionMask(['/request/headers/cookie', '/subject/email']) }).insertMany([
      row,
    ]);
    const stored = await database.db('policy_shadow_disagreements').where({ request_id: 'masked' }).first<{ input: unknown }>('input');
    expect(stored.input).toEqual({ n: 1, request: { headers: {} }, subject: { id: 'u-1' } });
  });
});
