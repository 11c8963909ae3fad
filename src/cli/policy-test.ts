// `portcullis policy test`: what a policy author runs before committing Rego: strict
// compile checks, formatting, and the Rego unit tests with per-file coverage.
import { spawn } from 'node:child_process';
import path from 'node:path';

export interface PolicyTestOptions {
  opa: string;
  source: string;
  minCoverage: number;
  out: (line: string) => void;
  err: (line: string) => void;
}

interface CoverageReport {
  coverage?: number;
  files?: Record<string, { coverage?: number }>;
}

export async function runPolicyTests(options: PolicyTestOptions): Promise<boolean> {
  const { opa, source, out, err } = options;
  const check = await run(opa, ['check', '--strict', source]);
  if (check.code !== 0) {
    err(`opa check --strict failed:\n${check.output.trim()}`);
    return false;
  }
  out('opa check --strict: ok');

  const fmt = await run(opa, ['fmt', '--list', source]);
  const unformatted = fmt.output.trim();
  if (fmt.code !== 0 || unformatted) {
    err(`these files are not formatted (run opa fmt -w ${path.relative(process.cwd(), source) || source}):\n${unformatted}`);
    return false;
  }
  out('opa fmt --list: ok');

  const tests = await run(opa, ['test', source, '--format', 'pretty', '--explain', 'fails']);
  out(tests.output.trim());
  if (tests.code !== 0) {
    err('opa test failed');
    return false;
  }

  const coverageRun = await run(opa, ['test', source, '--coverage', '--format', 'json']);
  let report: CoverageReport;
  try {
    report = JSON.parse(coverageRun.output) as CoverageReport;
  } catch {
    err(`opa test --coverage did not produce a report:\n${coverageRun.output.slice(0, 2000)}`);
    return false;
  }
  for (const [file, { coverage = 0 }] of Object.entries(report.files ?? {}).sort()) {
    out(`coverage ${coverage.toFixed(1).padStart(5)} %  ${path.relative(source, file) || file}`);
  }
  const total = report.coverage ?? 0;
  out(`coverage ${total.toFixed(1).padStart(5)} %  total (minimum ${options.minCoverage} %)`);
  if (total < options.minCoverage) {
    err(`policy coverage ${total.toFixed(1)} % is below the minimum ${options.minCoverage} %`);
    return false;
  }
  return true;
}

function run(command: string, args: string[]): Promise<{ code: number; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? 1, output }));
  });
}
