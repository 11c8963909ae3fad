// Where policies come from (`policy.source`): a directory of Rego compiled with the pinned OPA
// toolchain, a bundle .tar.gz on disk, or a bundle behind an http(s) URL polled with ETags.
// Each source fetches a bundle only when it changed, and says when a change is worth a look.
import { createHash } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError } from '../http/errors';
import { buildWasmBundle, resolveOpa, sourceRevision, type ToolchainOptions } from './opa-toolchain';
import { readBundle, type PolicyBundle } from './policy-bundle';

export type PolicySourceKind = 'directory' | 'bundle' | 'url';

export interface FetchedBundle {
  bundle: PolicyBundle;
  /** Marks this version as the one serving, so the next fetch can tell it is unchanged. */
  loaded(): void;
}

export interface PolicySource {
  readonly kind: PolicySourceKind;
  readonly location: string;
  /** The bundle, or undefined when it is the version last marked as loaded. Aborting `signal` stops a compilation. */
  fetch(signal?: AbortSignal): Promise<FetchedBundle | undefined>;
  /** Calls `onChange` whenever a fetch may find something new; returns the function that stops it. */
  watch(onChange: () => void, onError: (error: Error) => void): () => void;
}

export interface PolicySourceOptions {
  source: string;
  entrypoint: string;
  /** Where a compiled directory's bundle is written. */
  buildDir: string;
  toolchain: ToolchainOptions;
  /** How often a URL is polled. */
  pollIntervalMs: number;
  /** The config key errors name. Default `policy.source`. */
  key?: string;
}

/** Recognises the kind of `source`; a path that does not exist is a ConfigError. */
export async function openPolicySource(options: PolicySourceOptions): Promise<PolicySource> {
  const { source, key = 'policy.source' } = options;
  if (/^https?:\/\//.test(source)) return new UrlSource(source, options.pollIntervalMs);
  const info = await stat(source).catch(() => undefined);
  if (!info) throw new ConfigError(`${key}: ${source} does not exist`);
  if (info.isDirectory()) {
    const opa = await resolveOpa(options.toolchain);
    return new DirectorySource(source, options.entrypoint, path.join(options.buildDir, 'bundle.tar.gz'), opa, options.toolchain.log);
  }
  if (!/\.tar\.gz$|\.tgz$/.test(source)) throw new ConfigError(`${key}: ${source} is neither a directory nor a .tar.gz bundle`);
  return new BundleFileSource(source);
}

const DEBOUNCE_MS = 150;
const REWATCH_MS = 1000;
const WATCHED = /\.(rego|json)$/;

/**
 * Watches `dir` (recursively or not) and calls `onChange`, debounced, for the names `relevant`
 * accepts ('' is the folder itself). A folder that is removed and created again, or a watch
 * that fails, is watched again as soon as possible, followed by one `onChange`.
 */
function watchFolder(dir: string, recursive: boolean, relevant: (name: string) => boolean, onChange: () => void, onError: (error: Error) => void): () => void {
  let watcher: FSWatcher | undefined;
  let debounce: NodeJS.Timeout | undefined;
  let rewatch: NodeJS.Timeout | undefined;
  let stopped = false;
  const changed = () => {
    clearTimeout(debounce);
    // Editors save in several steps (truncate, write, rename): compile once they are done.
    debounce = setTimeout(onChange, DEBOUNCE_MS);
  };
  const restart = () => {
    watcher?.close();
    watcher = undefined;
    if (!stopped && !rewatch) rewatch = setTimeout(() => start(true), REWATCH_MS);
  };
  const start = (again: boolean) => {
    rewatch = undefined;
    if (stopped) return;
    try {
      watcher = watch(dir, { recursive, persistent: false }, (_event, name) => {
        const entry = name === null ? '' : String(name);
        // An event for the folder itself: it may be gone, and then this watch sees nothing more.
        if (entry === '') void stat(dir).then(() => undefined, restart);
        if (relevant(entry)) changed();
      });
      watcher.on('error', (error) => {
        onError(new Error(`watching ${dir} failed (${error.message}); retrying`));
        restart();
      });
      if (again) changed();
    } catch (error) {
      if (!again) onError(new Error(`cannot watch ${dir} (${(error as Error).message}); retrying`));
      restart();
    }
  };
  start(false);
  return () => {
    stopped = true;
    clearTimeout(debounce);
    clearTimeout(rewatch);
    watcher?.close();
  };
}

/** Rego (and data .json) files, compiled to a wasm bundle whenever their content changes. */
class DirectorySource implements PolicySource {
  readonly kind = 'directory';
  private loadedRevision: string | undefined;

  constructor(
    readonly location: string,
    private readonly entrypoint: string,
    private readonly output: string,
    private readonly opa: string,
    private readonly log: ((line: string) => void) | undefined,
  ) {}

  async fetch(signal?: AbortSignal): Promise<FetchedBundle | undefined> {
    const revision = await sourceRevision(this.location);
    if (revision === this.loadedRevision) return undefined;
    const started = Date.now();
    this.log?.(`compiling policies in ${this.location}…`);
    await buildWasmBundle({ opa: this.opa, source: this.location, entrypoints: [this.entrypoint], output: this.output, revision, ...(signal ? { signal } : {}) });
    this.log?.(`compiled policies in ${Date.now() - started} ms`);
    const bundle = await readBundle(await readFile(this.output));
    return { bundle, loaded: () => (this.loadedRevision = revision) };
  }

  watch(onChange: () => void, onError: (error: Error) => void): () => void {
    // Tests are not compiled into the bundle, so editing one changes nothing that serves.
    const relevant = (name: string) => name === '' || (WATCHED.test(name) && !name.endsWith('_test.rego'));
    return watchFolder(this.location, true, relevant, onChange, onError);
  }
}

/** A bundle file, e.g. one `portcullis policy build` wrote or a deployment copies in place. */
class BundleFileSource implements PolicySource {
  readonly kind = 'bundle';
  private loadedDigest: string | undefined;

  constructor(readonly location: string) {}

  async fetch(): Promise<FetchedBundle | undefined> {
    const bytes = await readFile(this.location);
    const digest = createHash('sha256').update(bytes).digest('hex');
    if (digest === this.loadedDigest) return undefined;
    return { bundle: await readBundle(bytes), loaded: () => (this.loadedDigest = digest) };
  }

  watch(onChange: () => void, onError: (error: Error) => void): () => void {
    // The folder, not the file: a bundle replaced by rename is a new file the old watch would miss.
    const name = path.basename(this.location);
    return watchFolder(path.dirname(this.location), false, (changed) => changed === '' || changed === name, onChange, onError);
  }
}

const FETCH_TIMEOUT_MS = 10_000;
const MAX_BUNDLE_BYTES = 64 * 1024 * 1024;

/** A bundle server: polled with If-None-Match, so an unchanged bundle costs a 304. */
class UrlSource implements PolicySource {
  readonly kind = 'url';
  private loadedEtag: string | undefined;
  private loadedDigest: string | undefined;

  constructor(
    readonly location: string,
    private readonly pollIntervalMs: number,
  ) {}

  async fetch(): Promise<FetchedBundle | undefined> {
    const headers: Record<string, string> = { accept: 'application/gzip, application/octet-stream' };
    if (this.loadedEtag) headers['if-none-match'] = this.loadedEtag;
    let response: Response;
    try {
      response = await fetch(this.location, { headers, signal: AbortSignal.timeout(FETCH_TIMEOUT_MS), redirect: 'follow' });
    } catch (error) {
      throw new Error(`cannot fetch the bundle from ${this.location}: ${(error as Error).cause instanceof Error ? ((error as Error).cause as Error).message : (error as Error).message}`);
    }
    if (response.status === 304) return undefined;
    if (!response.ok) {
      await response.body?.cancel();
      throw new Error(`the bundle server answered ${response.status} for ${this.location}`);
    }
    const declared = Number(response.headers.get('content-length') ?? 0);
    if (declared > MAX_BUNDLE_BYTES) {
      await response.body?.cancel();
      throw new Error(`the bundle at ${this.location} is larger than ${MAX_BUNDLE_BYTES} bytes`);
    }
    const bytes = Buffer.from(await response.arrayBuffer());
    if (bytes.length > MAX_BUNDLE_BYTES) throw new Error(`the bundle at ${this.location} is larger than ${MAX_BUNDLE_BYTES} bytes`);
    const etag = response.headers.get('etag') ?? undefined;
    // A server without ETags still costs no reload when the bytes are the same.
    const digest = createHash('sha256').update(bytes).digest('hex');
    if (digest === this.loadedDigest) {
      this.loadedEtag = etag;
      return undefined;
    }
    return {
      bundle: await readBundle(bytes),
      loaded: () => {
        this.loadedEtag = etag;
        this.loadedDigest = digest;
      },
    };
  }

  watch(onChange: () => void): () => void {
    const timer = setInterval(onChange, this.pollIntervalMs);
    timer.unref();
    return () => clearInterval(timer);
  }
}
