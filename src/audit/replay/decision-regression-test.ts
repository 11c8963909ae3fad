// Turns recorded decisions into an `opa test` file: each test evaluates the entrypoint with
// the record's stored (masked) input, at the request's recorded time (time.now_ns), and expects
// the recorded allow and status, so a policy author can pin a real incident. The output is
// already in `opa fmt` form.
import type { DecisionDetail } from '../store/pg-decision-query-store';

export const REGRESSION_PACKAGE = 'portcullis_regression_test';

/** Decisions without a stored input cannot be reproduced; the caller reports them. */
export function regressionTests(decisions: readonly DecisionDetail[], entrypoint: string): string {
  const rule = `data.${entrypoint.split('/').join('.')}`;
  const tests = decisions.map((decision) => {
    if (decision.input === null || decision.input === undefined)
      throw new Error(`decision ${decision.id} has no stored input (it was refused before the policy was asked)`);
    const outcome = decision.allow ? `allowed (${decision.status})` : `denied with ${decision.status}`;
    const comment = [
      `# Decision ${decision.id} at ${decision.time}: ${decision.method} ${decision.path} by ${decision.subject ?? 'an anonymous caller'},`,
      `# ${outcome} by policy revision ${decision.policy_revision ?? 'unknown'}.`,
      ...decision.reasons.map((reason) => `# Reason: ${reason.replace(/[\r\n]+/g, ' ')}`),
    ];
    return [
      ...comment,
      `test_decision_${decision.id.replace(/-/g, '_')} if {`,
      `\tresult := ${rule} with input as ${regoValue(decision.input)}${clockOf(decision.input)}`,
      `\tresult.allow == ${decision.allow}`,
      `\tresult.status == ${decision.status}`,
      '}',
    ].join('\n');
  });
  return `package ${REGRESSION_PACKAGE}\n\n${tests.join('\n\n')}\n`;
}

/** time.now_ns() as the gateway answered it for this input (its request time), when recorded. */
function clockOf(input: unknown): string {
  const ns = (input as { request?: { time_ns?: unknown } }).request?.time_ns;
  return typeof ns === 'number' ? ` with time.now_ns as ${regoValue(ns)}` : '';
}

/** JSON with the spacing `opa fmt` writes for composite literals; JSON strings are Rego strings. */
function regoValue(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(regoValue).join(', ')}]`;
  if (value !== null && typeof value === 'object') {
    return `{${Object.entries(value as Record<string, unknown>)
      .filter(([, item]) => item !== undefined)
      .map(([key, item]) => `${JSON.stringify(key)}: ${regoValue(item)}`)
      .join(', ')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}
