// `decisions query --format csv` from a real decision log whose client-chosen values start
// like spreadsheet formulas: every such cell comes out as text.
import type { Knex } from 'knex';
import { appendDecisions } from './support/audit-helpers';
import { requireBuild, runCli } from './support/cli-process';
import { createTestDatabase, type TestDatabase } from './support/test-database';

let database: TestDatabase;
let db: Knex;

beforeAll(async () => {
  requireBuild();
  database = await createTestDatabase();
  db = database.db;
});
afterAll(async () => database?.drop());

describe('portcullis decisions query --format csv', () => {
  it('prefixes with a quote every cell that starts with =, +, -, @, tab or CR', async () => {
    await appendDecisions(db, 1, 0, () => ({
      subject: "=cmd|' /C calc'!A0",
      requestId: '+1+1',
      path: '/orgs/acme/-2',
      reasons: ["@SUM(1+1)*cmd|' /C calc'!A0"],
      organization: '\tacme',
      policyRevision: '\rrev',
    }));
    const run = await runCli(['decisions', 'query', '--format', 'csv'], { DATABASE_URL: database.url });
    expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
    const row = run.stdout.split('\n')[1]!;
    expect(row).toContain(`,'+1+1,'=cmd|' /C calc'!A0,`);
    expect(row).toContain(`,'\tacme,`);
    expect(row).toContain(`,'@SUM(1+1)*cmd|' /C calc'!A0,"'\rrev",`);
    expect(row).toContain(',/orgs/acme/-2,');
  });
});
