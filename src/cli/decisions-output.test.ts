import type { DecisionSummary } from '../audit/store/pg-decision-query-store';
import { formatDecisions } from './decisions-output';

const decision = (overrides: Partial<DecisionSummary>): DecisionSummary => ({
  id: '6f1c2d3e-0000-4000-8000-000000000001',
  seq: 7,
  time: '2026-11-30T10:00:00.000Z',
  request_id: 'request-7',
  subject: 'alice|sub',
  user_id: null,
  organization: 'acme',
  action: 'project:read',
  method: 'GET',
  path: '/orgs/acme/projects/api',
  allow: true,
  status: 200,
  reasons: [],
  policy_revision: 'rev-1',
  eval_latency_us: 42,
  dry_run: false,
  code: 'granted',
  ...overrides,
});

const csvRow = (overrides: Partial<DecisionSummary>) => formatDecisions([decision(overrides)], 'csv', { header: false })[0]!;

describe('CSV output', () => {
  it.each(['=HYPERLINK("http://evil.example","x")', '+1+1', '-2+3', '@SUM(A1:A9)', '\tcmd', '\rcmd'])(
    'neutralizes a cell starting like a formula: %j',
    (subject) => {
      // A cell RFC 4180 must quote (a quote, comma or CR in it) keeps the leading ' inside the quotes.
      const quoted = /[",\r]/.test(subject);
      expect(csvRow({ subject })).toContain(`,request-7,${quoted ? `"'${subject.replace(/"/g, '""')}"` : `'${subject}`},,acme,`);
    },
  );

  it('neutralizes a joined reasons cell whose first reason starts like a formula', () => {
    expect(csvRow({ reasons: ['=1+1', 'second'] })).toContain(",'=1+1; second,");
  });

  it('leaves ordinary cells as they are', () => {
    expect(csvRow({ subject: 'alice|sub', reasons: ['a=b'] })).toBe(
      '2026-11-30T10:00:00.000Z,6f1c2d3e-0000-4000-8000-000000000001,7,request-7,alice|sub,,acme,project:read,GET,/orgs/acme/projects/api,true,200,a=b,rev-1,42,false,granted',
    );
  });
});
