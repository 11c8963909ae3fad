// `portcullis policy test`: what a policy author runs before committing Rego: strict compile
// checks, formatting, a WebAssembly build that the gateway would load (so a built-in the
// runtime lacks fails here, not in production), the Rego unit tests, and coverage enforced
// per policy file. By default it prints the failures and a summary, in a stable order.
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { buildWasmBundle, sourceSnapshot } from '../authz/opa-toolchain';
import { readBundle } from '../authz/policy-bundle';
import { WasmPolicyEngine } from '../authz/wasm-policy-engine';

export interface PolicyTestOptions {
  opa: string;
  source: string;
  entrypoint: string;
  /** Every policy file (tests left out) must reach it. */
  minCoverage: number;
  /** Every test, not only the failures. */
  verbose: boolean;
  /** Paths are printed relative to it. */
  cwd: string;
  out: (line: string) => void;
  err: (line: string) => void;
}

/** One entry of `opa test --format json`. */
interface TestResult {
  location?: { file: string; row: number };
  package: string;
  name: string;
  fail?: boolean;
  skip?: boolean;
  error?: { code?: string; message?: string };
  duration?: number;
  /** What the test print()ed, base64. */
  output?: string;
}

interface Range {
  start: { row: number };
  end: { row: number };
}

interface CoverageReport {
  files?: Record<string, { covered_lines?: number; not_covered_lines?: number; not_covered?: Range[] }>;
}

export async function runPolicyTests(options: PolicyTestOptions): Promise<boolean> {
  const { opa, source, out, err } = options;
  const shown = (file: string) => shownPath(options.cwd, file);
  const check = await run(opa, ['check', '--strict', source]);
  if (check.code !== 0) {
    err(`opa check --strict failed:\n${check.output.trim()}`);
    return false;
  }
  out('opa check --strict: ok');

  const fmt = await run(opa, ['fmt', '--list', source]);
  const unformatted = fmt.output.trim();
  if (fmt.code !== 0 || unformatted) {
    err(`these files are not formatted (run opa fmt -w ${shown(source)}):\n${unformatted}`);
    return false;
  }
  out('opa fmt --list: ok');

  const loads = await loadsInWebAssembly(opa, source, options.entrypoint, options.cwd);
  if (loads !== true) {
    err(`opa build -t wasm: ${loads}`);
    return false;
  }
  out('opa build -t wasm: ok (the gateway can load it)');

  const testRun = await run(opa, ['test', source, '--format', 'json']);
  const results = parseJson<TestResult[]>(testRun.stdout);
  if (!Array.isArray(results)) {
    err(`opa test did not produce a report:\n${testRun.output.slice(0, 2000).trim()}`);
    return false;
  }
  const ordered = [...results].sort(byLocation);
  const failed = ordered.filter((result) => result.fail || result.error);
  for (const result of options.verbose ? ordered : failed) out(describeTest(result, shown));
  const skipped = results.filter((result) => result.skip).length;
  out(`tests: ${results.length - failed.length - skipped} passed, ${failed.length} failed, ${skipped} skipped`);
  if (failed.length > 0) {
    err(`${failed.length} of ${results.length} policy tests failed (trace one with: opa test ${shown(source)} --run NAME --explain fails)`);
    return false;
  }

  const coverageRun = await run(opa, ['test', source, '--coverage', '--format', 'json']);
  const report = parseJson<CoverageReport>(coverageRun.stdout);
  if (!report?.files) {
    err(`opa test --coverage did not produce a report:\n${coverageRun.output.slice(0, 2000).trim()}`);
    return false;
  }
  return reportCoverage(report, options, shown);
}

/** Per policy file (tests are not policy), sorted; every file must reach the minimum. */
function reportCoverage(report: CoverageReport, options: PolicyTestOptions, shown: (file: string) => string): boolean {
  const { out, err, minCoverage } = options;
  const files = Object.entries(report.files ?? {})
    .filter(([file]) => !file.endsWith('_test.rego'))
    .sort(([a], [b]) => a.localeCompare(b));
  let covered = 0;
  let total = 0;
  const below: string[] = [];
  for (const [file, entry] of files) {
    const lines = (entry.covered_lines ?? 0) + (entry.not_covered_lines ?? 0);
    const percent = lines === 0 ? 100 : (100 * (entry.covered_lines ?? 0)) / lines;
    covered += entry.covered_lines ?? 0;
    total += lines;
    out(`coverage ${percent.toFixed(1).padStart(5)} %  ${path.relative(options.source, file) || file}`);
    const ranges = uncoveredRanges(entry.not_covered ?? []);
    if (ranges.length > 0) out(`  not covered: ${ranges.map((range) => `${shown(file)}:${range}`).join(', ')}`);
    if (percent < minCoverage) below.push(`${shown(file)} ${percent.toFixed(1)} %`);
  }
  const percent = total === 0 ? 100 : (100 * covered) / total;
  out(`coverage ${percent.toFixed(1).padStart(5)} %  total (minimum ${minCoverage} % per file)`);
  if (below.length > 0) {
    err(`policy coverage is below the minimum ${minCoverage} % in ${below.join(', ')}`);
    return false;
  }
  return true;
}

/** Rows not covered, merged into `a-b` ranges (a single row stays `a`). */
function uncoveredRanges(ranges: Range[]): string[] {
  const rows = [
    ...new Set(ranges.flatMap(({ start, end }) => Array.from({ length: end.row - start.row + 1 }, (_, n) => start.row + n))),
  ].sort((a, b) => a - b);
  const merged: Array<[number, number]> = [];
  for (const row of rows) {
    const last = merged.at(-1);
    if (last && row === last[1] + 1) last[1] = row;
    else merged.push([row, row]);
  }
  return merged.map(([from, to]) => (from === to ? `${from}` : `${from}-${to}`));
}

function describeTest(result: TestResult, shown: (file: string) => string): string {
  const where = result.location ? `${shown(result.location.file)}:${result.location.row}` : '';
  const status = result.error ? 'ERROR' : result.fail ? 'FAIL' : result.skip ? 'SKIP' : 'PASS';
  const lines = [`${status.padEnd(5)} ${where} ${result.package}.${result.name}`];
  if (result.error) lines.push(`      ${result.error.message ?? result.error.code ?? 'error'}`);
  const printed = result.output ? Buffer.from(result.output, 'base64').toString('utf8').trimEnd() : '';
  if (printed && (result.fail || result.error)) lines.push(...printed.split('\n').map((line) => `      ${line}`));
  return lines.join('\n');
}

function byLocation(a: TestResult, b: TestResult): number {
  const file = (a.location?.file ?? '').localeCompare(b.location?.file ?? '');
  return file !== 0 ? file : (a.location?.row ?? 0) - (b.location?.row ?? 0) || a.name.localeCompare(b.name);
}

/** `file` relative to `cwd` when below it (what an editor or a terminal opens), else as given. */
export function shownPath(cwd: string, file: string): string {
  const relative = path.relative(cwd, file);
  return relative && !relative.startsWith('..') && !path.isAbsolute(relative) ? relative : file;
}

/** Loads a built bundle as the gateway would; a refused built-in is named with its place among `source`'s files. */
export async function loadBuiltBundle(bundle: string, source: string, entrypoint: string, cwd: string): Promise<void> {
  const { rego } = await sourceSnapshot(source);
  const sources = new Map([...rego].map(([file, content]) => [shownPath(cwd, file), content]));
  await WasmPolicyEngine.create(await readBundle(await readFile(bundle)), entrypoint, { sources });
}

/** Builds the WebAssembly bundle into a temporary folder and loads it as the gateway would: true, or why not. */
async function loadsInWebAssembly(opa: string, source: string, entrypoint: string, cwd: string): Promise<true | string> {
  const work = await mkdtemp(path.join(os.tmpdir(), 'portcullis-policy-test-'));
  try {
    const { output } = await buildWasmBundle({ opa, source, entrypoints: [entrypoint], output: path.join(work, 'bundle.tar.gz') });
    await loadBuiltBundle(output, source, entrypoint, cwd);
    return true;
  } catch (error) {
    return (error as Error).message;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

function parseJson<T>(text: string): T | undefined {
  try {
    return JSON.parse(text) as T;
  } catch {
    return undefined;
  }
}

/** `output` is stdout and stderr as they came; `stdout` alone holds a JSON report. */
function run(command: string, args: string[]): Promise<{ code: number; output: string; stdout: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    let stdout = '';
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      stdout += chunk.toString();
    });
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? 1, output, stdout }));
  });
}
