// The built CLI (`bin/portcullis.js`) as a real process, for tests of the command line.
// The pinned opa comes from the global setup; PORTCULLIS_CONFIG and PORTCULLIS_STATE_DIR are
// cleared so a developer's own environment never leaks into a test.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { projectRoot } from '../../src/project-root';
import { AUDIENCE, ISSUER } from './token-issuer';

export const BIN = path.join(projectRoot, 'bin', 'portcullis.js');

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function requireBuild(): void {
  if (!existsSync(path.join(projectRoot, 'dist', 'cli', 'main.js')))
    throw new Error('dist/ is missing: run `npm run build` (npm test does)');
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

/** Resolves with the gateway URL once `serve` logs that it is ready; `output()` is everything it printed. */
export function whenReady(child: ChildProcessWithoutNullStreams): { gatewayUrl: Promise<string>; output: () => string } {
  let output = '';
  const gatewayUrl = new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      const ready = /"gateway":"(http:\/\/[^"]+)".*portcullis is ready/.exec(output);
      if (ready) resolve(ready[1]!);
    });
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.on('close', (code) => reject(new Error(`serve exited with ${code}: ${output}`)));
  });
  return { gatewayUrl, output: () => output };
}

/**
 * `portcullis explain <args>` standalone, with a config written in `work` that names the database
 * and the policy; explain calls no upstream, so every service points at a closed port.
 */
export async function runExplain(work: string, settings: { databaseUrl: string; policySource: string }, args: string[]): Promise<CliRun> {
  const config = path.join(work, 'explain.yaml');
  await writeFile(
    config,
    [
      `database: { url: "${settings.databaseUrl}" }`,
      `auth: { issuer: "${ISSUER}", audience: ${AUDIENCE}, jwks_file: jwks.json }`,
      `policy: { source: "${settings.policySource}" }`,
      'services:',
      ...['organizations', 'projects', 'credentials', 'users'].map((name) => `  ${name}: { url: "http://127.0.0.1:9" }`),
    ].join('\n'),
  );
  return runCli(['explain', ...args, '--config', config]);
}
