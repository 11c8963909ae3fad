// What every benchmark run shares: a fresh embedded PostgreSQL under .bench/, migrated and
// seeded; the shipped policies compiled with the project's pinned opa; an ES256 identity
// provider (JWKS file and signed tokens); targets started in child processes; the
// machine's description; and the section of BENCHMARKS.md each benchmark owns.
import { spawn, fork, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import type { Knex } from 'knex';
import { buildWasmBundle, OPA_VERSION, resolveOpa } from '../src/authz/opa-toolchain';
import { createDatabase, migrateToLatest } from '../src/db/database';
import { freePort } from '../src/base/free-port';
import { EmbeddedDatabase } from '../src/db/embedded-database';
import { projectRoot } from '../src/project-root';
import { statTimes } from './proc-stat';
import type { TargetKind, TargetSettings } from './targets';
import type { EvaluationMode } from '../src/authz/evaluation-placement';

export const ISSUER = 'https://id.bench.portcullis';
export const AUDIENCE = 'portcullis';
export const benchDir = path.join(projectRoot, '.bench');

export interface BenchEnvironment {
  dir: string;
  db: Knex;
  databaseUrl: string;
  opa: string;
  bundle: string;
  jwksFile: string;
  sign(sub: string): Promise<string>;
  /**
   * CPU time (user + system, µs) PostgreSQL has used so far: the postmaster, its live
   * processes (backends, WAL writer, checkpointer…) and the children it has reaped. Linux only
   * (/proc); undefined elsewhere.
   */
  postgresCpuUs(): number | undefined;
  close(): Promise<void>;
}

export type Measurement = 'loopDelay' | 'callbacks' | 'allocations' | 'survivors' | 'cpu' | 'profile';

export function log(line: string): void {
  process.stderr.write(`[bench] ${line}\n`);
}

/** Starts PostgreSQL and compiles the policy; the caller seeds what it needs. */
export async function prepareEnvironment(name: string): Promise<BenchEnvironment> {
  const dir = path.join(benchDir, name);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const started = Date.now();
  const embedded = await EmbeddedDatabase.create({ dataDir: path.join(dir, 'pgdata') });
  const admin = createDatabase({ url: embedded.url });
  await admin.raw('create database portcullis_bench');
  await admin.destroy();
  const databaseUrl = embedded.url.replace(/\/postgres$/, '/portcullis_bench');
  const db = createDatabase({ url: databaseUrl, poolMax: 10 });
  await migrateToLatest(db);
  log(`PostgreSQL ready and migrated in ${Date.now() - started} ms`);

  const opa = await resolveOpa({ opaBin: process.env.OPA_BIN, searchPath: process.env.PATH, log });
  const { output: bundle } = await buildWasmBundle({
    opa,
    source: path.join(projectRoot, 'policies'),
    entrypoints: ['portcullis/decision'],
    output: path.join(dir, 'bundle.tar.gz'),
  });

  const { privateKey, publicKey } = await generateKeyPair('ES256');
  const jwksFile = path.join(dir, 'jwks.json');
  await writeFile(jwksFile, JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'bench', alg: 'ES256', use: 'sig' }] }));
  const sign = (sub: string) =>
    new SignJWT({})
      .setProtectedHeader({ alg: 'ES256', kid: 'bench', typ: 'JWT' })
      .setSubject(sub)
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setIssuedAt()
      .setExpirationTime('2h')
      .sign(privateKey);

  return {
    dir,
    db,
    databaseUrl,
    opa,
    bundle,
    jwksFile,
    sign,
    postgresCpuUs: () => postgresCpuUs(path.join(dir, 'pgdata')),
    async close() {
      await db.destroy();
      await embedded.stop();
    },
  };
}

export function targetSettings(
  env: BenchEnvironment,
  extra: { upstreamUrl: string; opaUrl?: string; cache?: boolean; evaluation?: EvaluationMode },
): TargetSettings {
  return {
    upstreamUrl: extra.upstreamUrl,
    databaseUrl: env.databaseUrl,
    bundle: env.bundle,
    jwksFile: env.jwksFile,
    issuer: ISSUER,
    audience: AUDIENCE,
    stateDir: env.dir,
    opaUrl: extra.opaUrl ?? '',
    cache: extra.cache ?? true,
    evaluation: extra.evaluation ?? 'auto',
  };
}

export interface ProcessMemory {
  /** RSS as found, then everything after a full collection (when the process has --expose-gc). */
  rssBeforeGc: number;
  rss: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
}

export interface TargetProcess {
  url: string;
  process: ChildProcess;
  memory(): Promise<ProcessMemory>;
  /**
   * Starts a measurement in the target process (resolves once it runs), or stops it and
   * resolves with the figures (`profile`: written to `file`, whose path it resolves with).
   */
  measure<T>(kind: Measurement, action: 'start' | 'stop', file?: string): Promise<T>;
  stop(): Promise<void>;
}

/**
 * The Node.js flags the container image runs Portcullis with (the Dockerfile's ENTRYPOINT;
 * test/dockerfile.test.ts keeps the two the same). Every benchmark target runs with them, the
 * plain Express proxy and the OPA gateway too, so a comparison stays one of code, not of flags.
 * `--v8-pool-size=1`: one V8 helper thread instead of four (BENCHMARKS.md, ninth round).
 */
export const IMAGE_NODE_FLAGS: readonly string[] = ['--v8-pool-size=1'];

/** Forks bench/target-process.js and starts the target in it. */
export async function startTargetProcess(kind: TargetKind, settings: TargetSettings, execArgv: string[] = []): Promise<TargetProcess> {
  const child = fork(path.join(__dirname, 'target-process.js'), [kind], {
    execArgv: [...IMAGE_NODE_FLAGS, ...execArgv],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = await new Promise<string>((resolve, reject) => {
    child.once('message', (message: { ready?: string; failed?: string }) =>
      message.ready ? resolve(message.ready) : reject(new Error(`${kind} failed to start: ${message.failed}`)),
    );
    child.once('exit', (code) => reject(new Error(`${kind} exited with code ${code} before it was ready`)));
    child.send({ start: kind, settings });
  });
  return {
    url,
    process: child,
    memory: () =>
      new Promise((resolve) => {
        child.once('message', (message: { memory: ProcessMemory }) => resolve(message.memory));
        child.send({ memory: true });
      }),
    measure: <T>(kind: Measurement, action: 'start' | 'stop', file?: string) =>
      new Promise<T>((resolve) => {
        const answer = (message: Record<string, unknown>) => {
          if (!(kind in message)) return;
          child.off('message', answer);
          resolve(message[kind] as T);
        };
        child.on('message', answer);
        child.send({ [kind]: action, ...(file === undefined ? {} : { file }) });
      }),
    async stop() {
      if (child.exitCode === null) child.send({ stop: true });
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

function postgresCpuUs(dataDir: string): number | undefined {
  let postmaster: number;
  let processes: string[];
  try {
    postmaster = Number(readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    processes = readdirSync('/proc');
  } catch {
    return undefined;
  }
  let us = 0;
  for (const entry of processes) {
    if (!/^[0-9]+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    const times = statTimes(stat);
    if (Number(entry) === postmaster) us += times.ownUs + times.childrenUs;
    else if (times.ppid === postmaster) us += times.ownUs;
  }
  return us;
}

/** `opa run --server` on the same Rego the gateway compiles (tests left out). */
export async function startOpaServer(opa: string): Promise<{ url: string; stop(): Promise<void> }> {
  const port = await freePort();
  const child = spawn(
    opa,
    [
      'run',
      '--server',
      '--addr',
      `127.0.0.1:${port}`,
      '--log-level',
      'error',
      '--ignore',
      '*_test.rego',
      path.join(projectRoot, 'policies'),
    ],
    {
      stdio: ['ignore', 'ignore', 'inherit'],
    },
  );
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    const healthy = await fetch(`${url}/health`).then(
      (res) => res.ok,
      () => false,
    );
    if (healthy) break;
    if (Date.now() > deadline || child.exitCode !== null) throw new Error('opa run --server did not become healthy');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    url,
    async stop() {
      process.off('exit', killOnExit);
      child.kill('SIGTERM');
      await exited;
    },
  };
}

export async function describeMachine(db: Knex): Promise<string[]> {
  const { rows } = await db.raw<{ rows: { version: string }[] }>('select version()');
  const cpu = os.cpus()[0]?.model ?? 'unknown';
  return [
    `- date: ${new Date().toISOString()}`,
    `- CPU: ${cpu}, ${os.availableParallelism()} logical cores (\`nproc\`: ${os.availableParallelism()}), shared with the load generator, the upstream and PostgreSQL`,
    `- memory: ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB; ${os.type()} ${os.release()} ${os.arch()}`,
    `- Node.js ${process.version}; ${rows[0]?.version.split(',')[0] ?? 'PostgreSQL'} (embedded, same machine); OPA ${OPA_VERSION}`,
    `- load average when the report was written (other work on this shared machine adds noise): ${os
      .loadavg()
      .map((n) => n.toFixed(2))
      .join(', ')}`,
  ];
}

/** Replaces this benchmark's section of BENCHMARKS.md (between its markers), keeping the others. */
export async function writeBenchmarkSection(name: string, lines: readonly string[]): Promise<void> {
  const file = path.join(projectRoot, 'BENCHMARKS.md');
  const start = `<!-- ${name}:start -->`;
  const end = `<!-- ${name}:end -->`;
  const section = [start, ...lines, end].join('\n');
  const current = await readFile(file, 'utf8').catch(() => '# Benchmarks\n');
  const from = current.indexOf(start);
  const to = current.indexOf(end);
  const next =
    from >= 0 && to > from
      ? `${current.slice(0, from)}${section}${current.slice(to + end.length)}`
      : `${current.trimEnd()}\n\n${section}\n`;
  await writeFile(file, next);
  log(`wrote the ${name} section of BENCHMARKS.md`);
}

export function arg(name: string, fallback: number): number {
  const value = Number(option(name));
  return Number.isFinite(value) ? value : fallback;
}

/** The word after `--name`, when given. */
export function option(name: string): string | undefined {
  const index = process.argv.indexOf(`--${name}`);
  return index >= 0 ? process.argv[index + 1] : undefined;
}

export function flag(name: string): boolean {
  return process.argv.includes(`--${name}`);
}
