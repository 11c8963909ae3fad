// A decision record in OPA's decision-log event format, so collectors built for OPA's
// `decision_logs` plugin read Portcullis' records unchanged.
// https://www.openpolicyagent.org/docs/latest/management-decision-logs/
import type { DecisionContent } from '../chain/decision-chain';

export interface OpaDecisionEvent {
  labels: Record<string, string>;
  decision_id: string;
  /** The evaluated rule, e.g. `portcullis/decision`. */
  path: string;
  input?: unknown;
  /** The policy's output: code and params only when the decision has a code. */
  result: { allow: boolean; status: number; reasons: string[]; code?: string; params?: Record<string, unknown> };
  /** RFC 3339. */
  timestamp: string;
  bundles: Record<string, { revision: string }>;
  metrics?: { timer_rego_query_eval_ns: number };
}

export interface OpaEventOptions {
  /** The entrypoint (policy.entrypoint). */
  path: string;
  /** OPA sends `id` (the instance) and `version`; Portcullis adds `app`. */
  labels: Record<string, string>;
}

/** The bundle name under which the policy revision is reported. */
export const BUNDLE_NAME = 'portcullis';

export function opaDecisionEvent(content: DecisionContent, options: OpaEventOptions): OpaDecisionEvent {
  const event: OpaDecisionEvent = {
    labels: options.labels,
    decision_id: content.id,
    path: options.path,
    result: {
      allow: content.allow,
      status: content.status,
      reasons: content.reasons,
      ...(content.code !== undefined ? { code: content.code, params: content.code_params ?? {} } : {}),
    },
    timestamp: content.time,
    bundles: content.policy_revision ? { [BUNDLE_NAME]: { revision: content.policy_revision } } : {},
  };
  // A request refused before the policy was asked (no token) has no input.
  if (content.input !== null && content.input !== undefined) event.input = content.input;
  if (content.eval_latency_us !== null) event.metrics = { timer_rego_query_eval_ns: content.eval_latency_us * 1000 };
  return event;
}
