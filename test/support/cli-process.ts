// The built CLI (`bin/portcullis.js`) as a real process, for tests of the command line.
// The pinned opa comes from the global setup; PORTCULLIS_CONFIG and PORTCULLIS_STATE_DIR are
// cleared so a developer's own environment never leaks into a test.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { projectRoot } from '../../src/project-root';

export const BIN = path.join(projectRoot, 'bin', 'portcullis.js');

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function requireBuild(): void {
  if (!existsSync(path.join(projectRoot, 'dist', 'cli', 'main.js'))) throw new Error('dist/ is missing: run `npm run build` (npm test does)');
}

/** Starts `portcullis <args>` with OPA_BIN set and PORTCULLIS_CONFIG/_STATE_DIR cleared; `env` adds to or overrides that. */
export function spawnCli(args: string[], env: NodeJS.ProcessEnv = {}, cwd = projectRoot): ChildProcessWithoutNullStreams {
  return spawn(process.execPath, [BIN, ...args], {
    cwd,
    env: { ...process.env, PORTCULLIS_CONFIG: '', PORTCULLIS_STATE_DIR: '', OPA_BIN: process.env.PORTCULLIS_TEST_OPA, ...env },
  });
}

export function runCli(args: string[], env: NodeJS.ProcessEnv = {}, cwd = projectRoot): Promise<CliRun> {
  return new Promise((resolve) => {
    const child = spawnCli(args, env, cwd);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

