// Where policies come from (`policy.source`): a directory of Rego compiled with the pinned OPA
// toolchain, a bundle .tar.gz on disk, or a bundle behind an http(s) URL polled with ETags.
// Each source fetches a bundle only when it changed, and says when a change is worth a look.
import { createHash } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError } from '../base/errors';
import { buildWasmBundle, PolicyCompileError, resolveOpa, sourceSnapshot, type ToolchainOptions } from './opa-toolchain';
import { readBundle, type PolicyBundle } from './policy-bundle';

export type PolicySourceKind = 'directory' | 'bundle' | 'url';

export interface FetchedBundle {
  bundle: PolicyBundle;
  /** The source's files that differ from the version serving ("organization.rego changed"); empty when unknown. */
  changes: string[];
  /** The Rego sources by path, when the source has them (a wasm bundle does not). */
  sources?: ReadonlyMap<string, Buffer>;
  /** Marks this version as the one serving, so the next fetch can tell it is unchanged. */
  loaded(): void;
}

export interface PolicySource {
  readonly kind: PolicySourceKind;
  readonly location: string;
  /** The bundle, or undefined when it is the version last marked as loaded. Aborting `signal` stops a compilation. */
  fetch(signal?: AbortSignal): Promise<FetchedBundle | undefined>;
  /**
   * Calls `onChange` whenever a fetch may find something new, with the names that changed when
   * known (relative to the source; a folder ends with a separator); returns the function that stops it.
   */
  watch(onChange: (changed: string[]) => void, onError: (error: Error) => void): () => void;
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

/** What editors write beside the file being edited: vim's swap files and write test, backups, emacs autosaves and locks. */
export function isEditorScratch(name: string): boolean {
  const base = path.basename(name);
  return /\.sw[a-p]$|\.swp?x$|~$/.test(base) || /^#.*#$/.test(base) || base.startsWith('.#') || base === '4913';
}

/**
 * Watches `dir` (and, when `recursive`, every folder below it) and calls `onChange`, debounced,
 * with the names (relative to `dir`) that `relevant` accepts; '' is the folder itself.
 *
 * Each folder gets a watch of its own, never a watch on a file: a file's watch follows its
 * inode, and editors save by writing a new file and renaming it over the old one (sed -i, vim,
 * IntelliJ), after which a file watch sees nothing. (Node 20's `recursive` on Linux watches files.)
 * A folder created, removed or renamed is watched or dropped as it happens; `dir` removed and
 * created again, or a watch that fails, is watched again as soon as possible, with one `onChange`.
 */
function watchFolder(
  dir: string,
  recursive: boolean,
  relevant: (name: string) => boolean,
  onChange: (changed: string[]) => void,
  onError: (error: Error) => void,
): () => void {
  const watchers = new Map<string, FSWatcher>();
  let pending = new Set<string>();
  let debounce: NodeJS.Timeout | undefined;
  let rewatch: NodeJS.Timeout | undefined;
  let stopped = false;
  /** `name` changed; a folder (`folder`) counts whatever `relevant` says: it may hold policy files. */
  const changed = (name: string, folder = false) => {
    if (stopped || !(folder || relevant(name))) return;
    pending.add(name);
    clearTimeout(debounce);
    // Editors save in several steps (truncate, write, rename): compile once they are done.
    debounce = setTimeout(() => {
      const names = [...pending].sort();
      pending = new Set();
      onChange(names);
    }, DEBOUNCE_MS);
  };
  const closeAll = () => {
    for (const watcher of watchers.values()) watcher.close();
    watchers.clear();
  };
  const restart = () => {
    closeAll();
    if (!stopped && !rewatch) rewatch = setTimeout(() => start(true), REWATCH_MS);
  };
  /** Stops watching `folder` and every folder below it. */
  const drop = (folder: string) => {
    for (const [watched, watcher] of watchers) {
      if (watched === folder || watched.startsWith(`${folder}${path.sep}`)) {
        watcher.close();
        watchers.delete(watched);
      }
    }
  };
  const watchOne = (folder: string) => {
    if (watchers.has(folder)) return;
    const watcher = watch(folder, { persistent: false }, (_event, name) => void event(folder, name === null ? '' : String(name)));
    watcher.on('error', (error) => {
      onError(new Error(`watching ${folder} failed (${error.message}); retrying`));
      restart();
    });
    watchers.set(folder, watcher);
  };
  /** Watches `folder` and, when recursive, the folders below it (one that vanishes meanwhile is skipped). */
  const watchTree = async (folder: string) => {
    watchOne(folder);
    if (!recursive) return;
    const entries = await readdir(folder, { withFileTypes: true }).catch(() => []);
    for (const entry of entries) {
      if (entry.isDirectory() && !stopped) {
        const below = path.join(folder, entry.name);
        try {
          await watchTree(below);
        } catch {
          drop(below);
        }
      }
    }
  };
  const event = async (folder: string, name: string) => {
    if (stopped || isEditorScratch(name)) return;
    const full = path.join(folder, name);
    // A folder that is removed reports its own name; so does `dir`, which then needs watching again.
    if (name === '' || name === path.basename(folder)) {
      const gone = await stat(folder).then(
        () => false,
        () => true,
      );
      if (gone && folder === dir) return restart();
      if (gone) {
        // Moved away or removed with what it held: whichever of its own and its parent's events comes first tells.
        drop(folder);
        return changed(`${path.relative(dir, folder)}${path.sep}`, true);
      }
    }
    const relative = path.relative(dir, full);
    if (recursive && folder !== full) {
      const info = await stat(full).catch(() => undefined);
      if (info?.isDirectory() && !watchers.has(full)) {
        // Files may have landed in it before its watch began: look once, as for any change.
        await watchTree(full).catch(() => drop(full));
        changed(`${relative}${path.sep}`, true);
      } else if (!info && watchers.has(full)) {
        drop(full);
        changed(`${relative}${path.sep}`, true);
      }
    }
    changed(relative);
  };
  const start = (again: boolean) => {
    rewatch = undefined;
    if (stopped) return;
    watchTree(dir).then(
      () => {
        if (again) changed('');
      },
      (error: Error) => {
        if (!again) onError(new Error(`cannot watch ${dir} (${error.message}); retrying`));
        restart();
      },
    );
  };
  start(false);
  return () => {
    stopped = true;
    clearTimeout(debounce);
    clearTimeout(rewatch);
    closeAll();
  };
}

/** Rego (and data .json) files, compiled to a wasm bundle whenever their content changes. */
class DirectorySource implements PolicySource {
  readonly kind = 'directory';
  private loadedRevision: string | undefined;
  private loadedFiles = new Map<string, string>();

  constructor(
    readonly location: string,
    private readonly entrypoint: string,
    private readonly output: string,
    private readonly opa: string,
    private readonly log: ((line: string) => void) | undefined,
  ) {}

  async fetch(signal?: AbortSignal): Promise<FetchedBundle | undefined> {
    const { revision, files, contents, rego } = await sourceSnapshot(this.location);
    if (revision === this.loadedRevision) return undefined;
    const started = Date.now();
    // Said at start-up, where the first compile is waited for; a reload logs its own one line.
    const log = this.loadedRevision === undefined ? this.log : undefined;
    log?.(`compiling policies in ${this.location}…`);
    // opa compiles a copy of exactly the files read: the revision names what was compiled even
    // when an editor saves again meanwhile, and what editors leave beside the files (a dangling
    // emacs lock .#x.rego stops opa build) is not there.
    const staged = path.join(path.dirname(this.output), 'source');
    await rm(staged, { recursive: true, force: true });
    for (const [name, content] of contents) {
      await mkdir(path.dirname(path.join(staged, name)), { recursive: true });
      await writeFile(path.join(staged, name), content);
    }
    try {
      await buildWasmBundle({
        opa: this.opa,
        source: staged,
        entrypoints: [this.entrypoint],
        output: this.output,
        revision,
        ...(signal ? { signal } : {}),
      });
    } catch (error) {
      throw error instanceof PolicyCompileError ? error.relocated(staged, this.location) : error;
    }
    log?.(`compiled policies in ${Date.now() - started} ms`);
    const bundle = await readBundle(await readFile(this.output));
    const changes = this.loadedRevision === undefined ? [] : fileChanges(this.loadedFiles, files);
    return {
      bundle,
      changes,
      sources: rego,
      loaded: () => {
        this.loadedRevision = revision;
        this.loadedFiles = files;
      },
    };
  }

  watch(onChange: (changed: string[]) => void, onError: (error: Error) => void): () => void {
    // Tests are not compiled into the bundle, so editing one changes nothing that serves.
    const relevant = (name: string) => name === '' || (WATCHED.test(name) && !name.endsWith('_test.rego'));
    return watchFolder(this.location, true, relevant, onChange, onError);
  }
}

/** What a bundle source loaded last: the same bytes again cost no reload, new ones name the files that changed. */
class LoadedBundle {
  private digest: string | undefined;
  private files: ReadonlyMap<string, string> | undefined;

  /** The bundle in `bytes`, or undefined when they are the ones loaded last; its `loaded()` also runs `onLoaded`. */
  async read(bytes: Buffer, onLoaded?: () => void): Promise<FetchedBundle | undefined> {
    const digest = createHash('sha256').update(bytes).digest('hex');
    if (digest === this.digest) return undefined;
    const bundle = await readBundle(bytes);
    const files = bundleDigests(bundle);
    return {
      bundle,
      changes: this.files ? fileChanges(this.files, files) : [],
      loaded: () => {
        this.digest = digest;
        this.files = files;
        onLoaded?.();
      },
    };
  }
}

/** A bundle file, e.g. one `portcullis policy build` wrote or a deployment copies in place. */
class BundleFileSource implements PolicySource {
  readonly kind = 'bundle';
  private readonly last = new LoadedBundle();

  constructor(readonly location: string) {}

  async fetch(): Promise<FetchedBundle | undefined> {
    return this.last.read(await readFile(this.location));
  }

  watch(onChange: (changed: string[]) => void, onError: (error: Error) => void): () => void {
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
  private readonly last = new LoadedBundle();

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
      throw new Error(
        `cannot fetch the bundle from ${this.location}: ${(error as Error).cause instanceof Error ? ((error as Error).cause as Error).message : (error as Error).message}`,
      );
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
    const fetched = await this.last.read(bytes, () => (this.loadedEtag = etag));
    if (!fetched) this.loadedEtag = etag;
    return fetched;
  }

  watch(onChange: (changed: string[]) => void): () => void {
    const timer = setInterval(() => onChange([]), this.pollIntervalMs);
    timer.unref();
    return () => clearInterval(timer);
  }
}

/** Digests of a bundle's sources and data (the compiled policy and the manifest follow from them). */
function bundleDigests(bundle: PolicyBundle): Map<string, string> {
  const files = new Map<string, string>();
  for (const [name, bytes] of bundle.files) {
    if (name === 'policy.wasm' || name === '.manifest' || name.endsWith('.signatures.json')) continue;
    files.set(name, createHash('sha256').update(bytes).digest('hex'));
  }
  return files;
}

/** "a.rego changed", "b.rego added", "c.json removed", sorted by name. */
export function fileChanges(before: ReadonlyMap<string, string>, after: ReadonlyMap<string, string>): string[] {
  const names = [...new Set([...before.keys(), ...after.keys()])].sort();
  return names.flatMap((name) => {
    const was = before.get(name);
    const is = after.get(name);
    if (was === is) return [];
    return [`${name} ${was === undefined ? 'added' : is === undefined ? 'removed' : 'changed'}`];
  });
}
