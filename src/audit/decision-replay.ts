// Re-evaluates stored policy inputs with a candidate policy and reports every flip (allow to
// deny, deny to allow), grouped by action, organization and reason with a few example
// decision ids, so a policy change can be judged against real traffic before it ships.
import type { PolicyEngine, PolicyInput } from '../authz/policy-engine';
import type { DecisionFilter, ReplayRow } from './pg-decision-query-store';

export interface ReplayReader {
  count(filter: DecisionFilter): Promise<number>;
  replayPage(afterSeq: number, filter: DecisionFilter, limit: number): Promise<ReplayRow[]>;
}

export type FlipDirection = 'allow→deny' | 'deny→allow';

export interface FlipGroup {
  direction: FlipDirection;
  action: string;
  organization: string | null;
  /** The deny side's reason: the candidate's for allow→deny, the recorded one for deny→allow. */
  reason: string;
  count: number;
  /** Up to three decision ids. */
  examples: string[];
}

export interface ReplayReport {
  revision: string;
  /** Records re-evaluated. */
  replayed: number;
  unchanged: number;
  flipped: number;
  /** Records without a stored input (refused before the policy was asked, e.g. 401). */
  skipped: number;
  groups: FlipGroup[];
}

export interface ReplayOptions {
  filter: DecisionFilter;
  pageSize?: number;
  /** Called after each page, at most every `progressEveryMs`. */
  onProgress?: (done: number, total: number) => void;
  progressEveryMs?: number;
}

const EXAMPLES = 3;

export async function replayDecisions(reader: ReplayReader, candidate: PolicyEngine, options: ReplayOptions): Promise<ReplayReport> {
  const pageSize = options.pageSize ?? 5_000;
  const progressEveryMs = options.progressEveryMs ?? 2_000;
  const total = await reader.count(options.filter);
  const groups = new Map<string, FlipGroup>();
  const report: ReplayReport = { revision: candidate.revision, replayed: 0, unchanged: 0, flipped: 0, skipped: 0, groups: [] };
  let afterSeq = 0;
  let lastProgress = Date.now();
  for (;;) {
    const rows = await reader.replayPage(afterSeq, options.filter, pageSize);
    if (rows.length === 0) break;
    afterSeq = rows[rows.length - 1]!.seq;
    for (const row of rows) {
      if (row.input === null || row.input === undefined) {
        report.skipped += 1;
        continue;
      }
      report.replayed += 1;
      const decision = candidate.evaluate(row.input as PolicyInput).decision;
      if (decision.allow === row.allow) {
        report.unchanged += 1;
        continue;
      }
      report.flipped += 1;
      const direction: FlipDirection = row.allow ? 'allow→deny' : 'deny→allow';
      const reason = (row.allow ? decision.reasons : row.reasons).join('; ') || '(no reason given)';
      const key = JSON.stringify([direction, row.action, row.organization, reason]);
      let group = groups.get(key);
      if (!group) {
        group = { direction, action: row.action, organization: row.organization, reason, count: 0, examples: [] };
        groups.set(key, group);
      }
      group.count += 1;
      if (group.examples.length < EXAMPLES) group.examples.push(row.id);
    }
    if (options.onProgress && Date.now() - lastProgress >= progressEveryMs) {
      lastProgress = Date.now();
      options.onProgress(report.replayed + report.skipped, total);
    }
  }
  const text = (group: FlipGroup) => `${group.direction} ${group.action} ${group.organization ?? ''} ${group.reason}`;
  report.groups = [...groups.values()].sort((a, b) => b.count - a.count || text(a).localeCompare(text(b)));
  return report;
}
