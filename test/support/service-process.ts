// A long-running `portcullis` command (serve, directory serve) as a real process: started
// through test/support/cli-process.ts, ready once its log says so, stopped by a signal.
// The cluster test kills and restarts these like an orchestrator would.
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
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

/** Where freePort starts looking: above the well-known and most registered services' ports. */
const LOWEST_PORT = 10_000;

/**
 * A loopback port free right now, for a process that must keep its port across restarts (and
 * whose port is written into other processes' config before it starts). Picked below the
 * kernel's ephemeral range: a port the kernel picked and handed back could be taken by any
 * outgoing connection of the tests running beside this one before the process binds it (a
 * gateway of the cluster test once failed to start with EADDRINUSE that way).
 */
export async function freePort(): Promise<number> {
  const highest = ephemeralRangeStart() - 1;
  for (let attempt = 0; attempt < 50; attempt += 1) {
    const port = LOWEST_PORT + Math.floor(Math.random() * (highest - LOWEST_PORT + 1));
    if (await canListen(port)) return port;
  }
  throw new Error(`no free loopback port between ${LOWEST_PORT} and ${highest} after 50 tries`);
}

/** The first port of the kernel's ephemeral range; Linux's default where it cannot be read. */
function ephemeralRangeStart(): number {
  try {
    const start = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    if (Number.isInteger(start) && start > LOWEST_PORT + 1_000) return start;
  } catch {
    // not Linux
  }
  return 32_768;
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}
