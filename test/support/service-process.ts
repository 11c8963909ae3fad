// A long-running `portcullis` command (serve, directory serve) as a real process: started
// through test/support/cli-process.ts, ready once its log says so, stopped by a signal.
// The cluster test kills and restarts these like an orchestrator would.
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { spawnCli } from './cli-process';

/** Output kept for error messages: the tail, so a chatty process cannot fill the memory. */
const KEPT_OUTPUT = 20_000;

export interface ServiceProcess {
  readonly child: ChildProcessWithoutNullStreams;
  /** Resolves with the exit code (or the signal's name) once the process has exited. */
  readonly exited: Promise<number | string>;
  /** The last lines of stdout and stderr. */
  output(): string;
  /** Sends SIGTERM and waits for the exit (SIGKILL after `graceMs`). */
  stop(graceMs?: number): Promise<number | string>;
}

/**
 * Starts `portcullis <args>` and resolves once a line of its output matches `ready`;
 * rejects with its output if it exits first or is not ready within `timeoutMs`.
 */
export async function startServiceProcess(
  args: string[],
  env: NodeJS.ProcessEnv,
  ready: RegExp,
  timeoutMs = 30_000,
): Promise<ServiceProcess> {
  const child = spawnCli(args, env);
  let output = '';
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-KEPT_OUTPUT);
  };
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown')));
  const started = new Promise<void>((resolve, reject) => {
    let seen = '';
    child.stdout.on('data', (chunk: Buffer) => {
      keep(chunk);
      seen = (seen + chunk.toString()).slice(-KEPT_OUTPUT);
      if (ready.test(seen)) resolve();
    });
    child.stderr.on('data', keep);
    void exited.then((code) => reject(new Error(`portcullis ${args.join(' ')} exited with ${code} before it was ready:\n${output}`)));
  });
  const service: ServiceProcess = {
    child,
    exited,
    output: () => output,
    async stop(graceMs = 10_000) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
        try {
          return await exited;
        } finally {
          clearTimeout(timer);
        }
      }
      return exited;
    },
  };
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`portcullis ${args.join(' ')} was not ready within ${timeoutMs} ms:\n${output}`)), timeoutMs);
  });
  try {
    await Promise.race([started, late]);
  } catch (error) {
    child.kill('SIGKILL');
    throw error;
  } finally {
    clearTimeout(timer);
  }
  return service;
}
