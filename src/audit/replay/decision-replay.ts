// Re-evaluates stored policy inputs with a candidate policy and reports every change: allow
// flips, denials whose status changes (403 to 404), and inputs the candidate fails to evaluate.
// Changes are grouped by the policy revision that recorded the decision, then by kind, action,
// organization and reason, with a few example decision ids, so a policy change can be judged
// against real traffic before it ships.
import type { PolicyDecision, PolicyEngine, PolicyInput } from '../../authz/policy-engine';
import type { DecisionFilter, ReplayRow } from '../store/pg-decision-query-store';

export interface ReplayReader {
  count(filter: DecisionFilter): Promise<number>;
  replayPage(afterSeq: number, filter: DecisionFilter, limit: number): Promise<ReplayRow[]>;
}

/** `flip`: allow became deny or the reverse; `status`: still denied, with another status; `error`: the candidate could not evaluate. */
export type ChangeKind = 'flip' | 'status' | 'error';

export interface ChangeGroup {
  kind: ChangeKind;
  /** `allow→deny`, `deny→allow`, `403→404`, or for an error what was recorded before (`deny 403→error`). */
  change: string;
  /** The policy revision that recorded these decisions. */
  recordedRevision: string | null;
  action: string;
  organization: string | null;
  /** The candidate's reason, except for deny→allow: then the recorded one (the deny side's). */
  reason: string;
  count: number;
  /** Up to three decision ids. */
  examples: string[];
}

export interface ChangeCounts {
  /** Records re-evaluated. */
  replayed: number;
  unchanged: number;
  /** flipped + statusChanged + errors. */
  changed: number;
  flipped: number;
  statusChanged: number;
  errors: number;
}

export interface ReplayReport extends ChangeCounts {
  /** The candidate's revision. */
  revision: string;
  /** Records without a stored input (refused before the policy was asked, e.g. 401). */
  skipped: number;
  /** The counts per revision that recorded the decisions, most replayed first. */
  revisions: (ChangeCounts & { revision: string | null })[];
  groups: ChangeGroup[];
}

export interface ReplayOptions {
  filter: DecisionFilter;
  pageSize?: number;
  /** Called after each page, at most every `progressEveryMs`. */
  onProgress?: (done: number, total: number) => void;
  progressEveryMs?: number;
}

const EXAMPLES = 3;

// The engine never throws: a failed evaluation is a deny whose first reason starts with this
// (wasm-policy-engine's failure()), 500 for a runtime error, 403 for an undefined or malformed result.
const POLICY_ERROR = 'policy error: ';

const isPolicyError = (reasons: readonly string[]) => reasons[0]?.startsWith(POLICY_ERROR) === true;

/** What changed between the recorded decision and the candidate's, if anything. */
export function compareDecision(
  recorded: Pick<ReplayRow, 'allow' | 'status' | 'reasons'>,
  candidate: PolicyDecision,
): { kind: ChangeKind; change: string; reason: string } | undefined {
  const outcome = (allow: boolean, status: number) => (allow ? 'allow' : `deny ${status}`);
  const reasonOf = (reasons: readonly string[]) => reasons.join('; ') || '(no reason given)';
  if (isPolicyError(candidate.reasons) && !isPolicyError(recorded.reasons)) {
    return {
      kind: 'error',
      change: `${outcome(recorded.allow, recorded.status)}→error ${candidate.status}`,
      reason: reasonOf(candidate.reasons),
    };
  }
  if (candidate.allow !== recorded.allow) {
    return recorded.allow
      ? { kind: 'flip', change: 'allow→deny', reason: reasonOf(candidate.reasons) }
      : { kind: 'flip', change: 'deny→allow', reason: reasonOf(recorded.reasons) };
  }
  // An allowed record carries the upstream's status, not the policy's: only denials compare.
  if (!candidate.allow && candidate.status !== recorded.status) {
    return { kind: 'status', change: `${recorded.status}→${candidate.status}`, reason: reasonOf(candidate.reasons) };
  }
  return undefined;
}

const zero = (): ChangeCounts => ({ replayed: 0, unchanged: 0, changed: 0, flipped: 0, statusChanged: 0, errors: 0 });

function count(counts: ChangeCounts, kind: ChangeKind | undefined): void {
  counts.replayed += 1;
  if (kind === undefined) {
    counts.unchanged += 1;
    return;
  }
  counts.changed += 1;
  if (kind === 'flip') counts.flipped += 1;
  else if (kind === 'status') counts.statusChanged += 1;
  else counts.errors += 1;
}

const KIND_ORDER: Record<ChangeKind, number> = { error: 0, flip: 1, status: 2 };

export async function replayDecisions(reader: ReplayReader, candidate: PolicyEngine, options: ReplayOptions): Promise<ReplayReport> {
  const pageSize = options.pageSize ?? 5_000;
  const progressEveryMs = options.progressEveryMs ?? 2_000;
  const total = await reader.count(options.filter);
  const groups = new Map<string, ChangeGroup>();
  const revisions = new Map<string | null, ChangeCounts & { revision: string | null }>();
  const report: ReplayReport = { revision: candidate.revision, ...zero(), skipped: 0, revisions: [], groups: [] };
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
      const change = compareDecision(row, candidate.evaluate(row.input as PolicyInput).decision);
      let byRevision = revisions.get(row.policy_revision);
      if (!byRevision) revisions.set(row.policy_revision, (byRevision = { revision: row.policy_revision, ...zero() }));
      count(report, change?.kind);
      count(byRevision, change?.kind);
      if (!change) continue;
      const key = JSON.stringify([row.policy_revision, change.kind, change.change, row.action, row.organization, change.reason]);
      let group = groups.get(key);
      if (!group) {
        group = {
          ...change,
          recordedRevision: row.policy_revision,
          action: row.action,
          organization: row.organization,
          count: 0,
          examples: [],
        };
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
  report.revisions = [...revisions.values()].sort(
    (a, b) => b.replayed - a.replayed || String(a.revision).localeCompare(String(b.revision)),
  );
  const rank = new Map(report.revisions.map((revision, i) => [revision.revision, i]));
  const text = (group: ChangeGroup) => `${group.change} ${group.action} ${group.organization ?? ''} ${group.reason}`;
  report.groups = [...groups.values()].sort(
    (a, b) =>
      rank.get(a.recordedRevision)! - rank.get(b.recordedRevision)! ||
      KIND_ORDER[a.kind] - KIND_ORDER[b.kind] ||
      b.count - a.count ||
      text(a).localeCompare(text(b)),
  );
  return report;
}
