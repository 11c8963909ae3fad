// Replay's bookkeeping with a fake reader and a fake candidate: what counts as a flip, how flips
// are grouped, the example cap, skipped records and progress.
import type { PolicyEngine, PolicyInput } from '../authz/policy-engine';
import { replayDecisions, type ReplayReader } from './decision-replay';
import type { ReplayRow } from './pg-decision-query-store';

function row(seq: number, overrides: Partial<ReplayRow>): ReplayRow {
  return { id: `d-${seq}`, seq, action: 'project:read', organization: 'acme', allow: true, status: 200, reasons: ['granted'], input: { seq }, ...overrides };
}

class FakeReader implements ReplayReader {
  private readonly rows: ReplayRow[];
  constructor(rows: ReplayRow[]) {
    this.rows = [...rows].sort((a, b) => a.seq - b.seq);
  }
  async count(): Promise<number> {
    return this.rows.length;
  }
  async replayPage(afterSeq: number, _filter: unknown, limit: number): Promise<ReplayRow[]> {
    return this.rows.filter((r) => r.seq > afterSeq).slice(0, limit);
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

describe('replayDecisions', () => {
  it('groups flips by direction, action, organization and reason, with at most three examples each', async () => {
    const rows = [
      ...[1, 3, 5, 7, 9].map((seq) => row(seq, {})), // allow -> deny
      row(2, { allow: false, status: 403, reasons: ['missing permission'] }), // deny -> allow
      row(4, {}), // unchanged
      row(6, { input: null }), // skipped
      row(11, { organization: 'globex' }), // allow -> deny, another group
    ];
    const progress: number[] = [];
    const report = await replayDecisions(new FakeReader(rows), candidate, { filter: {}, pageSize: 2, progressEveryMs: 0, onProgress: (done) => progress.push(done) });
    expect(report).toEqual({
      revision: 'candidate',
      replayed: 8,
      unchanged: 1,
      flipped: 7,
      skipped: 1,
      groups: [
        { direction: 'allow→deny', action: 'project:read', organization: 'acme', reason: 'frozen', count: 5, examples: ['d-1', 'd-3', 'd-5'] },
        { direction: 'allow→deny', action: 'project:read', organization: 'globex', reason: 'frozen', count: 1, examples: ['d-11'] },
        { direction: 'deny→allow', action: 'project:read', organization: 'acme', reason: 'missing permission', count: 1, examples: ['d-2'] },
      ],
    });
    expect(progress).toEqual([2, 4, 6, 8, 9]);
  });
});
