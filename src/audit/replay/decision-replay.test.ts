// Replay's bookkeeping with a fake reader and a fake candidate: what counts as a change (an
// allow flip, a denial's new status, an evaluation error), how changes are grouped by the
// revision that recorded them, the example cap, skipped records and progress.
import type { PolicyDecision, PolicyEngine, PolicyInput } from '../../authz/policy-engine';
import { compareDecision, replayDecisions, type ReplayReader } from './decision-replay';
import type { ReplayRow } from '../store/pg-decision-query-store';

function row(seq: number, overrides: Partial<ReplayRow>): ReplayRow {
  return {
    id: `d-${seq}`,
    seq,
    action: 'project:read',
    organization: 'acme',
    allow: true,
    status: 200,
    reasons: ['granted'],
    input: { seq },
    policy_revision: 'rev-a',
    ...overrides,
  };
}

class FakeReader implements ReplayReader {
  private readonly rows: ReplayRow[];
  constructor(rows: ReplayRow[]) {
    this.rows = [...rows].sort((a, b) => a.seq - b.seq);
  }
  count(): Promise<number> {
    return Promise.resolve(this.rows.length);
  }
  replayPage(afterSeq: number, _filter: unknown, limit: number): Promise<ReplayRow[]> {
    return Promise.resolve(this.rows.filter((r) => r.seq > afterSeq).slice(0, limit));
  }
}

/** Denies odd seqs with "frozen"; allows the rest. */
const candidate: PolicyEngine = {
  revision: 'candidate',
  evaluate: (input: PolicyInput) => {
    const { seq } = input as unknown as { seq: number };
    const decision = seq % 2 ? { allow: false, status: 403, reasons: ['frozen'] } : { allow: true, status: 200, reasons: ['ok'] };
    return { decision, revision: 'candidate', latencyUs: 1 };
  },
};

const deny = (status: number, ...reasons: string[]): PolicyDecision => ({ allow: false, status, reasons });

describe('compareDecision', () => {
  const recordedDeny = { allow: false, status: 403, reasons: ['missing permission'] };

  it('counts a denial that keeps denying with another status as a status change, not as unchanged', () => {
    expect(compareDecision(recordedDeny, deny(404, 'not found'))).toEqual({ kind: 'status', change: '403→404', reason: 'not found' });
    expect(compareDecision(recordedDeny, deny(403, 'other words'))).toBeUndefined();
  });

  it('counts a candidate that cannot evaluate as an evaluation error, whatever its status', () => {
    expect(compareDecision(recordedDeny, deny(500, "policy error: evaluating 'portcullis/decision' failed: eval_conflict_error"))).toEqual({
      kind: 'error',
      change: 'deny 403→error 500',
      reason: "policy error: evaluating 'portcullis/decision' failed: eval_conflict_error",
    });
    expect(
      compareDecision(
        { allow: true, status: 201, reasons: [] },
        deny(403, "policy error: 'portcullis/decision' is undefined for this request"),
      ),
    ).toMatchObject({ kind: 'error', change: 'allow→error 403' });
    // The same failure as recorded is no change.
    expect(compareDecision({ allow: false, status: 500, reasons: ['policy error: x'] }, deny(500, 'policy error: x'))).toBeUndefined();
  });

  it("ignores an allowed record's status: it is the upstream's, not the policy's", () => {
    expect(compareDecision({ allow: true, status: 204, reasons: [] }, { allow: true, status: 200, reasons: ['ok'] })).toBeUndefined();
  });
});

describe('replayDecisions', () => {
  it('groups changes by recorded revision, kind, action, organization and reason, with at most three examples each', async () => {
    const rows = [
      ...[1, 3, 5, 7, 9].map((seq) => row(seq, {})), // allow -> deny
      row(2, { allow: false, status: 403, reasons: ['missing permission'] }), // deny -> allow
      row(4, {}), // unchanged
      row(6, { input: null }), // skipped
      row(11, { organization: 'globex' }), // allow -> deny, another group
      row(13, { allow: false, status: 404, reasons: ['no such project'], policy_revision: 'rev-b' }), // 404 -> 403
      row(15, { allow: false, status: 403, reasons: ['nope'], policy_revision: 'rev-b' }), // unchanged
    ];
    const progress: number[] = [];
    const report = await replayDecisions(new FakeReader(rows), candidate, {
      filter: {},
      pageSize: 2,
      progressEveryMs: 0,
      onProgress: (done) => progress.push(done),
    });
    expect(report).toEqual({
      revision: 'candidate',
      replayed: 10,
      unchanged: 2,
      changed: 8,
      flipped: 7,
      statusChanged: 1,
      errors: 0,
      skipped: 1,
      revisions: [
        { revision: 'rev-a', replayed: 8, unchanged: 1, changed: 7, flipped: 7, statusChanged: 0, errors: 0 },
        { revision: 'rev-b', replayed: 2, unchanged: 1, changed: 1, flipped: 0, statusChanged: 1, errors: 0 },
      ],
      groups: [
        {
          kind: 'flip',
          change: 'allow→deny',
          recordedRevision: 'rev-a',
          action: 'project:read',
          organization: 'acme',
          reason: 'frozen',
          count: 5,
          examples: ['d-1', 'd-3', 'd-5'],
        },
        {
          kind: 'flip',
          change: 'allow→deny',
          recordedRevision: 'rev-a',
          action: 'project:read',
          organization: 'globex',
          reason: 'frozen',
          count: 1,
          examples: ['d-11'],
        },
        {
          kind: 'flip',
          change: 'deny→allow',
          recordedRevision: 'rev-a',
          action: 'project:read',
          organization: 'acme',
          reason: 'missing permission',
          count: 1,
          examples: ['d-2'],
        },
        {
          kind: 'status',
          change: '404→403',
          recordedRevision: 'rev-b',
          action: 'project:read',
          organization: 'acme',
          reason: 'frozen',
          count: 1,
          examples: ['d-13'],
        },
      ],
    });
    expect(progress).toEqual([2, 4, 6, 8, 10, 11]);
  });
});
