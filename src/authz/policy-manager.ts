// Owns the policy that serves: loads a new engine from the source (compiled, verified,
// instantiated) and swaps the reference only when all of that succeeded. Evaluation is
// synchronous, so a request decides with the engine it read; a failed reload leaves the last
// good policy serving and is kept as `lastError` for the admin port.
import type { Logger } from 'pino';
import type { BundleVerifier } from './bundle-signature';
import { PolicyCompileError } from './opa-toolchain';
import type { PolicyEngine } from './policy-engine';
import type { FetchedBundle, PolicySource, PolicySourceKind } from './policy-loader';
import { UnsupportedBuiltinError } from './wasm-builtins';
import { ThreadedPolicyEngine } from './threaded-policy-engine';
import { WasmPolicyEngine } from './wasm-policy-engine';

export interface PolicyLoadFailure {
  file?: string;
  line?: number;
  message: string;
  at: Date;
}

export interface PolicyState {
  revision: string;
  source: string;
  kind: PolicySourceKind;
  loadedAt: Date;
  entrypoints: string[];
  /** The most recent failed load since the serving policy was loaded, or null. */
  lastError: PolicyLoadFailure | null;
}

export type ReloadOutcome =
  | { status: 'loaded'; revision: string }
  | { status: 'unchanged'; revision: string }
  | { status: 'failed'; revision: string; error: PolicyLoadFailure };

export interface PolicyManagerOptions {
  source: PolicySource;
  entrypoint: string;
  /** Bundles (files and URLs) must carry a valid OPA signature when set. */
  verifier?: BundleVerifier | undefined;
  logger: Pick<Logger, 'info' | 'warn' | 'error'>;
  /** How log lines name this policy ("policy", "shadow policy"). */
  label?: string;
  /** policy.evaluation: thread or auto: requests (and dry runs) may be judged in a policy thread. */
  thread?: boolean;
}

export class PolicyManager {
  /** The serving policy's engine on this thread (its state; evaluate() for what-if alternatives). */
  private engine: WasmPolicyEngine;
  /** What requests are judged with: `engine`, or its policy thread. */
  private serving: PolicyEngine;
  private loaded: Date;
  private lastError: PolicyLoadFailure | null = null;
  private running: Promise<ReloadOutcome> | undefined;
  private queued: Promise<ReloadOutcome> | undefined;
  private stopWatching: (() => void) | undefined;
  /** Aborted by close(): a compilation still running is killed. */
  private readonly closing = new AbortController();
  private readonly label: string;

  private constructor(
    private readonly options: PolicyManagerOptions,
    first: Loaded,
  ) {
    this.engine = first.engine;
    this.serving = first.serving;
    this.loaded = new Date();
    this.label = options.label ?? 'policy';
  }

  /** Loads the first policy; any failure (compile error, bad signature, unreachable URL) throws. */
  static async create(options: PolicyManagerOptions): Promise<PolicyManager> {
    const fetched = await options.source.fetch();
    if (!fetched) throw new Error(`${options.source.location} gave no policy`);
    const loaded = await load(fetched, options);
    fetched.loaded();
    return new PolicyManager(options, loaded);
  }

  /** The engine serving now. Read it once per request. */
  get current(): PolicyEngine {
    return this.serving;
  }

  get source(): string {
    return this.options.source.location;
  }

  get loadedAt(): Date {
    return this.loaded;
  }

  state(): PolicyState {
    return {
      revision: this.engine.revision,
      source: this.options.source.location,
      kind: this.options.source.kind,
      loadedAt: this.loaded,
      entrypoints: this.engine.entrypoints,
      lastError: this.lastError,
    };
  }

  /**
   * Fetches the source and swaps in the new policy if it loads. Reloads never overlap: a call
   * made while one runs waits for the next run, so it always sees changes made before it.
   */
  reload(): Promise<ReloadOutcome> {
    if (this.closing.signal.aborted) return Promise.resolve({ status: 'unchanged', revision: this.engine.revision });
    if (!this.running) {
      this.running = this.loadOnce().finally(() => (this.running = undefined));
      return this.running;
    }
    this.queued ??= this.running.then(() => {
      this.queued = undefined;
      return this.reload();
    });
    return this.queued;
  }

  /** Reloads on every change the source reports (file edits, the poll interval). */
  watch(): void {
    if (this.stopWatching) return;
    this.stopWatching = this.options.source.watch(
      () => void this.reload(),
      (error) => this.options.logger.warn({ err: error, source: this.source }, `${this.label} source: ${error.message}`),
    );
  }

  /** Stops watching and kills a compilation still running (its reload reports 'failed'). */
  close(): void {
    this.stopWatching?.();
    this.stopWatching = undefined;
    this.closing.abort();
    retire(this.serving);
  }

  private async loadOnce(): Promise<ReloadOutcome> {
    const { logger } = this.options;
    const started = Date.now();
    try {
      const fetched = await this.options.source.fetch(this.closing.signal);
      if (!fetched) {
        // The source is back to what serves (e.g. a broken edit was undone): nothing is wrong any more.
        this.lastError = null;
        return { status: 'unchanged', revision: this.engine.revision };
      }
      const { engine, serving } = await load(fetched, this.options);
      fetched.loaded();
      const previous = this.engine.revision;
      // Requests that read the old engine finish with it; its thread stops after them.
      retire(this.serving);
      this.engine = engine;
      this.serving = serving;
      this.loaded = new Date();
      this.lastError = null;
      const { changes } = fetched;
      logger.info(
        { revision: engine.revision, previous, source: this.source, changes, ms: Date.now() - started },
        `${this.label} reloaded: ${previous} → ${engine.revision}${changes.length > 0 ? ` (${changes.join(', ')})` : ''}`,
      );
      return { status: 'loaded', revision: engine.revision };
    } catch (error) {
      this.lastError = describeFailure(error);
      // Closing killed the compiler: nothing is wrong with the source.
      if (this.closing.signal.aborted) return { status: 'failed', revision: this.engine.revision, error: this.lastError };
      logger.error(
        { source: this.source, file: this.lastError.file, line: this.lastError.line, revision: this.engine.revision },
        `${this.label} reload failed, the last good policy keeps serving: ${this.lastError.message}`,
      );
      return { status: 'failed', revision: this.engine.revision, error: this.lastError };
    }
  }
}

interface Loaded {
  engine: WasmPolicyEngine;
  serving: PolicyEngine;
}

async function load({ bundle, sources }: FetchedBundle, options: PolicyManagerOptions): Promise<Loaded> {
  // A directory is compiled here from files the operator points at; only bundles are signed.
  if (options.verifier && options.source.kind !== 'directory') await options.verifier.verify(bundle.files);
  const engine = await WasmPolicyEngine.create(bundle, options.entrypoint, { sources });
  return { engine, serving: options.thread ? await ThreadedPolicyEngine.start(engine, bundle, options.entrypoint) : engine };
}

/** A policy thread that no longer serves stops once the evaluations it has in hand are answered. */
function retire(serving: PolicyEngine): void {
  if (serving instanceof ThreadedPolicyEngine) void serving.close();
}

function describeFailure(error: unknown): PolicyLoadFailure {
  const at = new Date();
  if (error instanceof PolicyCompileError) {
    const [first, ...rest] = error.findings;
    const more =
      rest.length > 0
        ? ` (and ${rest.length} more: ${rest.map((f) => (f.file ? `${f.file}:${f.line ?? '?'}` : f.message)).join(', ')})`
        : '';
    return {
      ...(first?.file ? { file: first.file } : {}),
      ...(first?.line ? { line: first.line } : {}),
      message: `${first?.code ? `${first.code}: ` : ''}${first?.message ?? error.message}${more}`,
      at,
    };
  }
  if (error instanceof UnsupportedBuiltinError) {
    const located = error.uses.find((use) => use.file);
    return { ...(located ? { file: located.file, line: located.line } : {}), message: error.message, at };
  }
  return { message: error instanceof Error ? error.message : String(error), at };
}
