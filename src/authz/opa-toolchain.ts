// The official OPA toolchain, pinned. Found as OPA_BIN, as an `opa` of the pinned version
// on PATH, or installed once with `go install` into the project's git-ignored .tools/bin.
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { projectRoot } from '../project-root';

const execFileAsync = promisify(execFile);

export const OPA_VERSION = '1.22.3';
export const OPA_MODULE = `github.com/open-policy-agent/opa@v${OPA_VERSION}`;

export interface ToolchainOptions {
  /** Explicit binary (the OPA_BIN environment variable). */
  opaBin?: string | undefined;
  /** The PATH to search for an `opa` of the pinned version. */
  searchPath?: string | undefined;
  /** Where `go install` puts the binary; default `<project>/.tools/bin`. */
  installDir?: string;
  log?: (line: string) => void;
}

/** Returns the path of a usable opa binary, installing the pinned version when there is none. */
export async function resolveOpa(options: ToolchainOptions = {}): Promise<string> {
  const log = options.log ?? (() => undefined);
  if (options.opaBin) {
    if (!(await opaVersion(options.opaBin))) throw new Error(`OPA_BIN=${options.opaBin} is not a runnable opa binary`);
    return options.opaBin;
  }
  for (const dir of (options.searchPath ?? '').split(path.delimiter).filter(Boolean)) {
    const candidate = path.join(dir, 'opa');
    if (existsSync(candidate) && (await opaVersion(candidate)) === OPA_VERSION) return candidate;
  }
  const installDir = options.installDir ?? path.join(projectRoot, '.tools', 'bin');
  const installed = path.join(installDir, 'opa');
  if (existsSync(installed) && (await opaVersion(installed)) === OPA_VERSION) return installed;

  await mkdir(installDir, { recursive: true });
  const started = Date.now();
  log(`installing OPA ${OPA_VERSION} with go install ${OPA_MODULE} into ${installDir} (first time only, a few minutes)…`);
  const ticker = setInterval(() => log(`  still compiling OPA… ${Math.round((Date.now() - started) / 1000)} s`), 15_000);
  try {
    await run('go', ['install', OPA_MODULE], { env: { ...process.env, GOBIN: installDir, CGO_ENABLED: '0' } });
  } catch (error) {
    throw new Error(`could not install OPA (${(error as Error).message}); install Go, or set OPA_BIN to an opa ${OPA_VERSION} binary`);
  } finally {
    clearInterval(ticker);
  }
  log(`installed OPA ${OPA_VERSION} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return installed;
}

async function opaVersion(binary: string): Promise<string | undefined> {
  try {
    const { stdout } = await execFileAsync(binary, ['version'], { timeout: 10_000 });
    return /^Version:\s*(\S+)/m.exec(stdout)?.[1];
  } catch {
    return undefined;
  }
}

export interface BuildOptions {
  opa: string;
  /** A directory of .rego (and data .json) files. */
  source: string;
  entrypoints: string[];
  output: string;
  /** Defaults to a content hash of the source files. */
  revision?: string;
  /** A PEM private key (RSA or EC): the bundle gets an OPA `.signatures.json`. */
  signing?: { keyFile: string; algorithm: string };
  /** `opa build` is killed after this long. Default BUILD_TIMEOUT_MS. */
  timeoutMs?: number;
  /** Aborting kills `opa build` (a policy manager that closes). */
  signal?: AbortSignal;
}

/** Long enough for a large policy on a slow machine; a compiler that hangs must not block reloads forever. */
export const BUILD_TIMEOUT_MS = 120_000;

/** `opa build` did not finish in time or was cancelled; it was killed and the source is not at fault. */
export class PolicyBuildInterrupted extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PolicyBuildInterrupted';
  }
}

/** One finding of the compiler: `file:line: code: message`, or `file: message` for data files. */
export interface CompileFinding {
  file?: string;
  line?: number;
  code?: string;
  message: string;
}

/** `opa build` refused the sources; `findings` locate each problem. */
export class PolicyCompileError extends Error {
  constructor(
    readonly findings: CompileFinding[],
    private readonly output: string,
  ) {
    super(`policy compilation failed: ${oneLine(output)}`);
    this.name = 'PolicyCompileError';
  }

  /** The same error about files compiled from a copy in `from`, told about their originals in `to`. */
  relocated(from: string, to: string): PolicyCompileError {
    const move = (text: string) => text.split(`${from}${path.sep}`).join(`${to}${path.sep}`);
    return new PolicyCompileError(
      this.findings.map((finding) => ({
        ...finding,
        ...(finding.file ? { file: move(finding.file) } : {}),
        message: move(finding.message),
      })),
      move(this.output),
    );
  }
}

/** Compiles Rego to a WebAssembly bundle with `opa build -t wasm`. Throws with the compiler's message. */
export async function buildWasmBundle(options: BuildOptions): Promise<{ output: string; revision: string }> {
  const revision = options.revision ?? (await sourceRevision(options.source));
  await mkdir(path.dirname(options.output), { recursive: true });
  const entrypoints = options.entrypoints.flatMap((e) => ['-e', e]);
  // opa signs only in bundle mode; for a plain directory both modes produce the same files.
  const signing = options.signing ? ['--bundle', '--signing-key', options.signing.keyFile, '--signing-alg', options.signing.algorithm] : [];
  const timeoutMs = options.timeoutMs ?? BUILD_TIMEOUT_MS;
  try {
    await run(
      options.opa,
      [
        'build',
        '-t',
        'wasm',
        ...entrypoints,
        ...signing,
        '--ignore',
        '*_test.rego',
        '--revision',
        revision,
        '-o',
        options.output,
        options.source,
      ],
      {
        timeoutMs,
        ...(options.signal ? { signal: options.signal } : {}),
      },
    );
  } catch (error) {
    if (error instanceof PolicyBuildInterrupted) throw error;
    const output = (error as Error).message;
    throw new PolicyCompileError(parseFindings(output), output);
  }
  return { output: options.output, revision };
}

/** Reads opa's error output; a message without a location is kept as one finding. */
export function parseFindings(output: string): CompileFinding[] {
  const findings: CompileFinding[] = [];
  for (const raw of output.split('\n')) {
    const line = raw.trim().replace(/^error: (load error: )?(\d+ errors? occurred( during loading)?: )?/, '');
    const located = /^(.+?\.(?:rego|json|ya?ml)):(\d+): ([a-z_]+): (.+)$/.exec(line);
    if (located) {
      findings.push({ file: located[1]!, line: Number(located[2]), code: located[3]!, message: located[4]! });
      continue;
    }
    const inFile = /^(.+?\.(?:rego|json|ya?ml)): (.+)$/.exec(line);
    if (inFile) findings.push({ file: inFile[1]!, message: inFile[2]! });
  }
  if (findings.length === 0) findings.push({ message: oneLine(output) || 'opa build failed without output' });
  return findings;
}

/** A short, stable hash over the policy sources (tests excluded), used as the revision. */
export async function sourceRevision(source: string): Promise<string> {
  return (await sourceSnapshot(source)).revision;
}

export interface SourceSnapshot {
  revision: string;
  /** A digest of each policy file by its path relative to the source: what changed between two snapshots. */
  files: Map<string, string>;
  /** Each policy file's content by its path relative to the source: what a staged build compiles. */
  contents: Map<string, Buffer>;
  /** The Rego files' contents by full path: where a built-in is used, since a wasm bundle keeps no Rego. */
  rego: Map<string, Buffer>;
}

export async function sourceSnapshot(source: string): Promise<SourceSnapshot> {
  const hash = createHash('sha256');
  const files = new Map<string, string>();
  const contents = new Map<string, Buffer>();
  const rego = new Map<string, Buffer>();
  for (const file of await policyFiles(source)) {
    const name = path.relative(source, file);
    const content = await readFile(file);
    hash.update(name).update('\0').update(content).update('\0');
    files.set(name, createHash('sha256').update(content).digest('hex'));
    contents.set(name, content);
    if (file.endsWith('.rego')) rego.set(file, content);
  }
  return { revision: `sha256:${hash.digest('hex').slice(0, 16)}`, files, contents, rego };
}

/** Every .rego and .json file below `dir`, sorted, `*_test.rego` excluded. */
export async function policyFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile() && /\.(rego|json)$/.test(e.name) && !/_test\.rego$/.test(e.name))
    .map((e) => path.join(e.parentPath, e.name))
    .sort();
}

/** opa prints one finding per line (`file:line: code: message`); keep them all on one line. */
function oneLine(output: string): string {
  const lines = output
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean);
  const findings = lines.filter((line) => /:\d+: /.test(line));
  return (findings.length > 0 ? findings : lines).join('; ');
}

interface RunOptions {
  env?: NodeJS.ProcessEnv;
  /** The child is killed (SIGKILL) after this long and the run rejects with PolicyBuildInterrupted. */
  timeoutMs?: number;
  /** Aborting kills the child (SIGKILL) and rejects with PolicyBuildInterrupted. */
  signal?: AbortSignal;
}

function run(command: string, args: string[], options: RunOptions = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const { signal, timeoutMs } = options;
    if (signal?.aborted) {
      reject(new PolicyBuildInterrupted(`${command} ${args[0]} was cancelled before it started`));
      return;
    }
    const child = spawn(command, args, {
      env: options.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let interrupted: string | undefined;
    const kill = (why: string) => {
      interrupted ??= why;
      child.kill('SIGKILL');
    };
    const timer =
      timeoutMs === undefined
        ? undefined
        : setTimeout(() => kill(`${command} ${args[0]} did not finish within ${timeoutMs} ms and was killed`), timeoutMs);
    const onAbort = () => kill(`${command} ${args[0]} was cancelled and killed`);
    signal?.addEventListener('abort', onAbort, { once: true });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.on('error', (error) => reject(new Error(`${command}: ${error.message}`)));
    child.on('close', (code) => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      if (interrupted) reject(new PolicyBuildInterrupted(interrupted));
      else if (code === 0) resolve(output);
      else reject(new Error(output.trim() || `${command} exited with ${code}`));
    });
  });
}
