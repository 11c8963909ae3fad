// The authorization stage on OPA's WebAssembly target: the compiled Rego is loaded once
// and evaluated synchronously for every request. It fails closed: an evaluation error or
// anything but a well-formed decision becomes a deny that says what went wrong.
//
// Hot path (BENCHMARKS.md): the input goes in pre-serialized as UTF-8 bytes, and parts that
// are shared between requests (the directory caches hand out frozen subjects and facts) are
// serialized once. The instance's linear memory only ever grows, to the largest input seen;
// past a bound the instance is re-created from the compiled module, so one huge input cannot
// pin that memory for the life of the process.
//
// The host's built-ins come from ./wasm-builtins: time.now_ns() is the evaluating input's
// request.time_ns, and a policy importing a built-in nobody provides is refused at load.
import { loadPolicy, loadPolicySync, type LoadedPolicy } from '@open-policy-agent/opa-wasm';
import { PolicyError, toError } from '../base/errors';
import type { PolicyBundle } from './policy-bundle';
import type { PolicyDecision, PolicyEngine, PolicyEvaluation, PolicyInput } from './policy-engine';
import { checkBuiltins, hostBuiltins, importedBuiltins } from './wasm-builtins';

/** Linear memory above which the instance is re-created after an evaluation. */
export const MAX_POLICY_MEMORY_BYTES = 64 * 1024 * 1024;

export class WasmPolicyEngine implements PolicyEngine {
  /** JSON of frozen input parts, by identity: a cached subject is serialized once, not per request. */
  private readonly serialized = new WeakMap<object, string>();
  private readonly encoder = new TextEncoder();
  private recycled = 0;

  private constructor(
    private policy: LoadedPolicy,
    /** request.time_ns of the input being evaluated: what the instance's time.now_ns() answers. */
    private readonly evaluating: { timeNs: number | undefined },
    private readonly builtins: ReturnType<typeof hostBuiltins>,
    private readonly module: WebAssembly.Module,
    private readonly data: object,
    private readonly entrypoint: string,
    private readonly entrypointId: number,
    readonly revision: string,
    private readonly maxMemoryBytes: number,
  ) {}

  /** Bytes of WebAssembly memory the instance holds now. */
  get memoryBytes(): number {
    return this.policy.mem.buffer.byteLength;
  }

  /** How often the instance was re-created because its memory passed the bound. */
  get recycledInstances(): number {
    return this.recycled;
  }

  /** Every entrypoint the compiled policy defines, sorted. */
  get entrypoints(): string[] {
    return Object.keys(this.policy.entrypoints).sort();
  }

  /**
   * Loads the bundle's policy and data; throws a PolicyError when the entrypoint is missing, or
   * an UnsupportedBuiltinError naming the built-ins the runtime cannot evaluate.
   */
  static async create(
    bundle: PolicyBundle,
    entrypoint: string,
    options: {
      maxMemoryBytes?: number;
      /** The Rego sources by path, to say where a refused built-in is used. */ sources?: ReadonlyMap<string, Buffer> | undefined;
    } = {},
  ): Promise<WasmPolicyEngine> {
    let policy: LoadedPolicy;
    let module: WebAssembly.Module;
    const evaluating: { timeNs: number | undefined } = { timeNs: undefined };
    const builtins = hostBuiltins(() => evaluating.timeNs);
    try {
      module = await WebAssembly.compile(bundle.wasm);
      policy = await loadPolicy(module, undefined, builtins);
      policy.setData(bundle.data);
    } catch (thrown) {
      throw new PolicyError(`the policy's WebAssembly could not be loaded: ${toError(thrown).message}`, { cause: thrown });
    }
    checkBuiltins(importedBuiltins(policy.wasmInstance, policy.mem), options.sources);
    const entrypointId = Object.hasOwn(policy.entrypoints, entrypoint) ? policy.entrypoints[entrypoint] : undefined;
    if (entrypointId === undefined) {
      const available = Object.keys(policy.entrypoints).sort();
      throw new PolicyError(
        `the policy has no entrypoint '${entrypoint}'; it has ${available.length > 0 ? available.map((e) => `'${e}'`).join(', ') : 'none'} ` +
          `(build it with opa build -t wasm -e ${entrypoint})`,
      );
    }
    return new WasmPolicyEngine(
      policy,
      evaluating,
      builtins,
      module,
      bundle.data,
      entrypoint,
      entrypointId,
      bundle.revision,
      options.maxMemoryBytes ?? MAX_POLICY_MEMORY_BYTES,
    );
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
      this.evaluating.timeNs = input.request.time_ns;
      resultSet = this.policy.evaluate(this.serialize(input), this.entrypointId);
    } catch (thrown) {
      return failure(500, `evaluating '${this.entrypoint}' failed: ${toError(thrown).message}`);
    } finally {
      this.evaluating.timeNs = undefined;
      if (this.policy.mem.buffer.byteLength > this.maxMemoryBytes) this.recycle();
    }
    const result = Array.isArray(resultSet) && resultSet.length === 1 ? (resultSet[0] as { result?: unknown }).result : undefined;
    if (result === undefined) return failure(403, `'${this.entrypoint}' is undefined for this request`);
    return checkDecision(result, this.entrypoint);
  }
  /**
   * The input as UTF-8 JSON in an ArrayBuffer, which opa-wasm copies into the instance as is
   * (given an object, it would JSON.stringify and encode the whole input every time).
   */
  private serialize(input: PolicyInput): ArrayBuffer {
    let json = '{';
    for (const [key, value] of Object.entries(input)) {
      if (value === undefined) continue;
      json += `${json.length > 1 ? ',' : ''}${JSON.stringify(key)}:${this.json(value)}`;
    }
    json += '}';
    // Allocated here, not by Buffer (pooled) or TextEncoder.encode: opa-wasm requires an ArrayBuffer of exactly this input.
    const bytes = new Uint8Array(Buffer.byteLength(json));
    this.encoder.encodeInto(json, bytes);
    return bytes.buffer;
  }

  /** A frozen object cannot change, so its JSON is kept for as long as the object lives. */
  private json(value: unknown): string {
    if (typeof value !== 'object' || value === null || !Object.isFrozen(value)) return JSON.stringify(value);
    let text = this.serialized.get(value);
    if (text === undefined) {
      text = JSON.stringify(value);
      this.serialized.set(value, text);
    }
    return text;
  }

  private recycle(): void {
    const fresh = loadPolicySync(this.module, undefined, this.builtins);
    fresh.setData(this.data);
    this.policy = fresh;
    this.recycled += 1;
  }
}

/** Accepts only the shape of design §3.4; a deny keeps the policy's status and reasons. */
function checkDecision(value: unknown, entrypoint: string): PolicyDecision {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return failure(403, `'${entrypoint}' is ${describe(value)}, not an object with allow, status and reasons`);
  }
  const { allow, status, reasons } = value as Record<string, unknown>;
  if (typeof allow !== 'boolean') return failure(403, `'${entrypoint}' has allow ${describe(allow)}, not true or false`);
  if (typeof status !== 'number' || !Number.isInteger(status))
    return failure(403, `'${entrypoint}' has status ${describe(status)}, not an integer`);
  if (!Array.isArray(reasons) || !reasons.every((r): r is string => typeof r === 'string')) {
    return failure(403, `'${entrypoint}' has reasons ${describe(reasons)}, not a list of strings`);
  }
  if (!allow && (status < 400 || status > 599))
    return failure(403, `'${entrypoint}' denies with status ${status}, not an error status`, reasons);
  const { code, params } = value as Record<string, unknown>;
  if (code === undefined) {
    if (params !== undefined) return failure(403, `'${entrypoint}' has params but no code`, reasons);
    return { allow, status, reasons };
  }
  if (typeof code !== 'string' || !DECISION_CODE.test(code))
    return failure(403, `'${entrypoint}' has code ${describe(code)}, not a snake_case name (${DECISION_CODE.source})`, reasons);
  if (params === undefined) return { allow, status, reasons, code, params: {} };
  if (params === null || typeof params !== 'object' || Array.isArray(params))
    return failure(403, `'${entrypoint}' has params ${describe(params)}, not an object`, reasons);
  return { allow, status, reasons, code, params: params as Record<string, unknown> };
}

/** Codes are counted and filtered on: one spelling per outcome, never free text. */
const DECISION_CODE = /^[a-z][a-z0-9_]{0,63}$/;

/** Engine-made decisions (the policy's output unusable, its evaluation failed) carry `policy_error`. */
function failure(status: 403 | 500, problem: string, reasons: readonly string[] = []): PolicyDecision {
  return { allow: false, status, reasons: [`policy error: ${problem}`, ...reasons], code: 'policy_error', params: {} };
}

function describe(value: unknown): string {
  if (value === undefined) return 'missing';
  const json = JSON.stringify(value);
  return json.length > 80 ? `${json.slice(0, 77)}...` : json;
}
