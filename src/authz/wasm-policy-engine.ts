// The authorization stage on OPA's WebAssembly target: the compiled Rego is loaded once
// and evaluated synchronously for every request. It fails closed: an evaluation error or
// anything but a well-formed decision becomes a deny that says what went wrong.
//
// Hot path (BENCHMARKS.md): the input's JSON is written as UTF-8 straight into the
// instance's memory and the result read from it natively (ABI 1.2, as opa-wasm does, minus
// its copies), and parts that are shared between requests (the directory caches hand out
// frozen subjects and facts) are serialized once. The instance's linear memory only ever grows, to the largest input seen;
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

/** The instance's exports that an evaluation calls (OPA's WebAssembly ABI 1.2). */
interface EvalExports {
  opa_eval: (
    reserved: number,
    entrypoint: number,
    data: number,
    input: number,
    inputLength: number,
    heap: number,
    format: number,
  ) => number;
}

/** opa-wasm's LoadedPolicy fields the direct evaluation reads (public in its typings, typed loosely there). */
interface PolicyInternals {
  minorVersion: number;
  dataAddr: number;
  dataHeapPtr: number;
  wasmInstance: { exports: unknown };
  mem: { readonly buffer: ArrayBuffer; grow(pages: number): number };
}

const WASM_PAGE_BYTES = 64 * 1024;

export class WasmPolicyEngine implements PolicyEngine {
  /** JSON of frozen input parts, by identity: a cached subject is serialized once, not per request. */
  private readonly serialized = new WeakMap<object, string>();
  /** A Buffer over the instance's memory (no copy), renewed when the memory grows or the instance is re-created. */
  private memoryView: Buffer | undefined;
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
    return this.evaluation(input, input.request.time_ns);
  }

  /**
   * The same for an input already serialized by inputJson() (in another thread, say), with its
   * request.time_ns beside it for time.now_ns(). Never throws.
   */
  evaluateJson(json: string, timeNs: number | undefined): PolicyEvaluation {
    return this.evaluation(json, timeNs);
  }

  /** Timed from the input as given (so its serialization counts when it is not serialized yet). */
  private evaluation(input: PolicyInput | string, timeNs: number | undefined): PolicyEvaluation {
    const started = process.hrtime.bigint();
    const decision = this.decide(input, timeNs);
    const latencyUs = Math.round(Number(process.hrtime.bigint() - started) / 1000);
    return { decision, revision: this.revision, latencyUs };
  }

  private decide(input: PolicyInput | string, timeNs: number | undefined): PolicyDecision {
    let resultSet: unknown;
    try {
      this.evaluating.timeNs = timeNs;
      resultSet = this.run(typeof input === 'string' ? input : this.inputJson(input));
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
  /** The input as JSON; parts shared between requests are serialized once. */
  inputJson(input: PolicyInput): string {
    let json = '{';
    for (const key of Object.keys(input)) {
      const value: unknown = input[key as keyof PolicyInput];
      if (value === undefined) continue;
      json += `${json.length > 1 ? ',' : ''}${JSON.stringify(key)}:${this.json(value)}`;
    }
    return `${json}}`;
  }

  /**
   * What opa-wasm's `evaluate` does for ABI 1.2 (write the input above the data, `opa_eval`,
   * read the result set's JSON), without its copies: the input is encoded straight into the
   * instance's memory instead of into an ArrayBuffer that is then copied there, and the
   * result is found and decoded natively (the SDK scans for its end byte by byte in
   * JavaScript and builds a TextDecoder per call: about a tenth of an evaluation). An older ABI
   * goes through the SDK.
   */
  private run(json: string): unknown {
    const policy = this.policy as unknown as PolicyInternals;
    if (!(policy.minorVersion >= 2)) return this.policy.evaluate(utf8ArrayBuffer(json), this.entrypointId);
    const inputAddr = policy.dataHeapPtr;
    // UTF-8 takes at most 3 bytes per UTF-16 code unit; only when that might not fit is the
    // exact length counted, and the memory grown by what it lacks, as the SDK grows it.
    if (inputAddr + json.length * 3 > policy.mem.buffer.byteLength) {
      const shortfall = inputAddr + Buffer.byteLength(json) - policy.mem.buffer.byteLength;
      if (shortfall > 0) policy.mem.grow(Math.ceil(shortfall / WASM_PAGE_BYTES));
    }
    const inputLength = this.memory().write(json, inputAddr);
    const { opa_eval } = policy.wasmInstance.exports as EvalExports;
    const resultAddr = opa_eval(0, this.entrypointId, policy.dataAddr, inputAddr, inputLength, inputAddr + inputLength, 0);
    // The evaluation may have grown the memory: memory() renews the view then.
    const memory = this.memory();
    const end = memory.indexOf(0, resultAddr);
    return JSON.parse(memory.toString('utf8', resultAddr, end));
  }

  private memory(): Buffer {
    const buffer = this.policy.mem.buffer;
    if (this.memoryView?.buffer !== buffer) this.memoryView = Buffer.from(buffer);
    return this.memoryView;
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

/** An ArrayBuffer of exactly the UTF-8 of `json` (not a pooled Buffer's), as opa-wasm requires. */
function utf8ArrayBuffer(json: string): ArrayBuffer {
  const bytes = new Uint8Array(Buffer.byteLength(json));
  new TextEncoder().encodeInto(json, bytes);
  return bytes.buffer;
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
export function failure(status: 403 | 500, problem: string, reasons: readonly string[] = []): PolicyDecision {
  return { allow: false, status, reasons: [`policy error: ${problem}`, ...reasons], code: 'policy_error', params: {} };
}

function describe(value: unknown): string {
  if (value === undefined) return 'missing';
  const json = JSON.stringify(value);
  return json.length > 80 ? `${json.slice(0, 77)}...` : json;
}
