// The authorization stage on OPA's WebAssembly target: the compiled Rego is loaded once
// and evaluated synchronously for every request. It fails closed: an evaluation error or
// anything but a well-formed decision becomes a deny that says what went wrong.
import { loadPolicy, type LoadedPolicy } from '@open-policy-agent/opa-wasm';
import { PolicyError, toError } from '../http/errors';
import type { PolicyBundle } from './policy-bundle';
import type { PolicyDecision, PolicyEngine, PolicyEvaluation, PolicyInput } from './policy-engine';

export class WasmPolicyEngine implements PolicyEngine {
  private constructor(
    private readonly policy: LoadedPolicy,
    private readonly entrypoint: string,
    private readonly entrypointId: number,
    readonly revision: string,
  ) {}

  /** Loads the bundle's policy and data; throws a PolicyError when the entrypoint is missing. */
  static async create(bundle: PolicyBundle, entrypoint: string): Promise<WasmPolicyEngine> {
    let policy: LoadedPolicy;
    try {
      policy = await loadPolicy(bundle.wasm);
      policy.setData(bundle.data);
    } catch (thrown) {
      throw new PolicyError(`the policy's WebAssembly could not be loaded: ${toError(thrown).message}`, { cause: thrown });
    }
    const entrypointId = Object.hasOwn(policy.entrypoints, entrypoint) ? policy.entrypoints[entrypoint] : undefined;
    if (entrypointId === undefined) {
      const available = Object.keys(policy.entrypoints).sort();
      throw new PolicyError(
        `the policy has no entrypoint '${entrypoint}'; it has ${available.length > 0 ? available.map((e) => `'${e}'`).join(', ') : 'none'} ` +
          `(build it with opa build -t wasm -e ${entrypoint})`,
      );
    }
    return new WasmPolicyEngine(policy, entrypoint, entrypointId, bundle.revision);
  }

  /** Never throws. */
  evaluate(input: PolicyInput): PolicyEvaluation {
    const started = process.hrtime.bigint();
    const decision = this.decide(input);
    const latencyUs = Math.round(Number(process.hrtime.bigint() - started) / 1000);
    return { decision, revision: this.revision, latencyUs };
  }

  private decide(input: PolicyInput): PolicyDecision {
    let resultSet: unknown;
    try {
      resultSet = this.policy.evaluate(input, this.entrypointId);
    } catch (thrown) {
      return failure(500, `evaluating '${this.entrypoint}' failed: ${toError(thrown).message}`);
    }
    const result = Array.isArray(resultSet) && resultSet.length === 1 ? (resultSet[0] as { result?: unknown }).result : undefined;
    if (result === undefined) return failure(403, `'${this.entrypoint}' is undefined for this request`);
    return checkDecision(result, this.entrypoint);
  }
}

/** Accepts only the shape of design §3.4; a deny keeps the policy's status and reasons. */
function checkDecision(value: unknown, entrypoint: string): PolicyDecision {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return failure(403, `'${entrypoint}' is ${describe(value)}, not an object with allow, status and reasons`);
  }
  const { allow, status, reasons } = value as Record<string, unknown>;
  if (typeof allow !== 'boolean') return failure(403, `'${entrypoint}' has allow ${describe(allow)}, not true or false`);
  if (typeof status !== 'number' || !Number.isInteger(status)) return failure(403, `'${entrypoint}' has status ${describe(status)}, not an integer`);
  if (!Array.isArray(reasons) || !reasons.every((r): r is string => typeof r === 'string')) {
    return failure(403, `'${entrypoint}' has reasons ${describe(reasons)}, not a list of strings`);
  }
  if (!allow && (status < 400 || status > 599)) return failure(403, `'${entrypoint}' denies with status ${status}, not an error status`, reasons);
  return { allow, status, reasons };
}

function failure(status: 403 | 500, problem: string, reasons: readonly string[] = []): PolicyDecision {
  return { allow: false, status, reasons: [`policy error: ${problem}`, ...reasons] };
}

function describe(value: unknown): string {
  if (value === undefined) return 'missing';
  const json = JSON.stringify(value);
  return json.length > 80 ? `${json.slice(0, 77)}...` : json;
}
