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
}

export class PolicyManager {
  private engine: WasmPolicyEngine;
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
    first: WasmPolicyEngine,
  ) {
    this.engine = first;
    this.loaded = new Date();
    this.label = options.label ?? 'policy';
  }

  /** Loads the first policy; any failure (compile error, bad signature, unreachable URL) throws. */
  static async create(options: PolicyManagerOptions): Promise<PolicyManager> {
    const fetched = await options.source.fetch();
    if (!fetched) throw new Error(`${options.source.location} gave no policy`);
    const engine = await load(fetched, options);
    fetched.loaded();
    return new PolicyManager(options, engine);
  }

  /** The engine serving now. Read it once per request. */
  get current(): PolicyEngine {
    return this.engine;
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
      const engine = await load(fetched, this.options);
      fetched.loaded();
      const previous = this.engine.revision;
      this.engine = engine;
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

async function load({ bundle, sources }: FetchedBundle, options: PolicyManagerOptions): Promise<WasmPolicyEngine> {
  // A directory is compiled here from files the operator points at; only bundles are signed.
  if (options.verifier && options.source.kind !== 'directory') await options.verifier.verify(bundle.files);
  return WasmPolicyEngine.create(bundle, options.entrypoint, { sources });
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
