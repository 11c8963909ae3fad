// Authorization stage contract: a policy input in, a decision out. Implementations must
// fail closed: anything but a well-formed `{allow: true}` is a deny.
import type { Facts, Subject } from '../directory/subject';
import type { Resource } from '../routes/route';

export interface PolicyInput {
  /**
   * `checked_by_upstream`: parameters the route leaves to the upstream (R7); absent when none.
   * `time` (RFC 3339, UTC) and `time_ns` (ns since the epoch, to the millisecond): when the
   * gateway received the request, what time.now_ns() answers; absent only in inputs recorded
   * before they existed.
   */
  request: { id: string; method: string; path: string; route: string; time?: string; time_ns?: number; checked_by_upstream?: string[] };
  action: string;
  resource: Resource;
  subject: Subject;
  facts: Facts;
}

export interface PolicyDecision {
  allow: boolean;
  status: number;
  reasons: string[];
  /**
   * A stable, countable name for the outcome (`missing_permission`, `granted`), snake_case;
   * absent when the policy sets none. `params` (a JSON object) details it, only with a code.
   */
  code?: string;
  params?: Record<string, unknown>;
}

export interface PolicyEvaluation {
  decision: PolicyDecision;
  /** Revision of the policy that decided (bundle manifest revision or content hash). */
  revision: string;
  /** Wall-clock evaluation time in microseconds. */
  latencyUs: number;
}

export interface PolicyEngine {
  readonly revision: string;
  evaluate(input: PolicyInput): PolicyEvaluation;
  /** The same, in a thread beside the event loop (`policy.evaluation: thread`, or `auto` under load); never rejects. */
  evaluateOffThread?(input: PolicyInput): Promise<PolicyEvaluation>;
}
