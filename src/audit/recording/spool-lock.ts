// Who owns a spool directory: a lock file created exclusively (O_EXCL) holding a random
// instance id, kept fresh by a heartbeat (its mtime). Process ids mean nothing across
// containers sharing a volume (every gateway may be PID 1), so a lock is held while its
// heartbeat is recent, and a lock whose heartbeat stopped (a crashed owner) is taken over.
// Only an owner in this very PID namespace (same host, same /proc/self/ns/pid) that is
// gone is taken over at once: there, and only there, its pid means something.
import { randomUUID } from 'node:crypto';
import {
  closeSync,
  fsyncSync,
  linkSync,
  openSync,
  readFileSync,
  readlinkSync,
  renameSync,
  statSync,
  unlinkSync,
  utimesSync,
  writeSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError } from '../../base/errors';

const FILE = 'spool.lock';
/** A lock whose heartbeat is older than this is a crashed owner's. */
export const SPOOL_LOCK_STALE_MS = 30_000;

interface Owner {
  instance: string;
  host: string;
  /** The PID namespace (Linux); absent elsewhere. */
  pidns?: string;
  pid: number;
  since: string;
}

export interface SpoolLockOptions {
  /** For tests: how old a heartbeat must be to count as stale; the heartbeat beats three times as often. */
  staleMs?: number;
}

export class SpoolLock {
  private readonly heartbeat: NodeJS.Timeout;
  private lostTo: string | undefined;

  private constructor(
    readonly file: string,
    private readonly owner: Owner,
    staleMs: number,
  ) {
    this.heartbeat = setInterval(() => this.beat(), Math.max(10, Math.floor(staleMs / 3)));
    this.heartbeat.unref();
  }

  /** Takes the lock of `dir`, or throws a ConfigError naming the instance that holds it. */
  static acquire(dir: string, options: SpoolLockOptions = {}): SpoolLock {
    const staleMs = options.staleMs ?? SPOOL_LOCK_STALE_MS;
    const file = path.join(dir, FILE);
    const owner: Owner = {
      instance: randomUUID(),
      host: os.hostname(),
      ...pidNamespace(),
      pid: process.pid,
      since: new Date().toISOString(),
    };
    for (let attempt = 0; attempt < 3; attempt++) {
      if (create(file, owner)) return new SpoolLock(file, owner, staleMs);
      const held = read(file);
      if (!held) continue; // released between our attempt and the read
      const age = Date.now() - held.mtimeMs;
      if (age < staleMs && !(held.owner && goneFromHere(held.owner, owner))) {
        const who = held.owner ? `instance ${held.owner.instance} on ${held.owner.host} (pid ${held.owner.pid})` : 'an unreadable lock';
        throw new ConfigError(
          `audit.spool_dir: ${dir} is used by another running Portcullis, ${who}, alive ${Math.max(0, Math.round(age / 1000))} s ago; give each instance its own spool_dir (a crashed owner's lock is taken over after ${Math.round(staleMs / 1000)} s)`,
        );
      }
      takeOver(file, held.content);
    }
    throw new ConfigError(`audit.spool_dir: could not take the lock ${file} (other instances are contending for it)`);
  }

  /** Set when another instance took the lock over (this one's heartbeat had stalled past the stale age). */
  get lost(): string | undefined {
    return this.lostTo;
  }

  release(): void {
    clearInterval(this.heartbeat);
    if (this.lostTo || !this.stillOurs()) return;
    try {
      unlinkSync(this.file);
    } catch {
      // Already gone: nothing to release.
    }
  }

  private beat(): void {
    if (this.lostTo) return;
    if (!this.stillOurs()) {
      this.lostTo = read(this.file)?.owner?.instance ?? 'nobody (the lock file is gone)';
      clearInterval(this.heartbeat);
      return;
    }
    const now = new Date();
    try {
      utimesSync(this.file, now, now);
    } catch {
      // Checked again on the next beat.
    }
  }

  private stillOurs(): boolean {
    return read(this.file)?.owner?.instance === this.owner.instance;
  }
}

function pidNamespace(): { pidns?: string } {
  try {
    return { pidns: readlinkSync('/proc/self/ns/pid') };
  } catch {
    return {};
  }
}

/** An owner in our PID namespace whose process is gone (or is this process, which holds no spool there). */
function goneFromHere(held: Owner, us: Owner): boolean {
  if (held.host !== us.host || held.pidns !== us.pidns || !Number.isInteger(held.pid) || held.pid <= 0) return false;
  if (held.pid === us.pid) return true;
  try {
    process.kill(held.pid, 0);
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

/** Creates the lock file only if there is none (O_EXCL), with its content durable. */
function create(file: string, owner: Owner): boolean {
  let fd: number;
  try {
    fd = openSync(file, 'wx', 0o644);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  }
  try {
    writeSync(fd, JSON.stringify(owner));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return true;
}

function read(file: string): { content: string; owner: Owner | undefined; mtimeMs: number } | undefined {
  try {
    const { mtimeMs } = statSync(file);
    const content = readFileSync(file, 'utf8');
    let owner: Owner | undefined;
    try {
      owner = JSON.parse(content) as Owner;
    } catch {
      owner = undefined; // a lock being written, or a PID file of an earlier version: judged by its age alone
    }
    return { content, owner, mtimeMs };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/**
 * Moves a stale lock aside (rename is atomic: of two contenders, one moves it). If what was
 * moved is not the lock judged stale (another contender already replaced it), it is put back
 * with link(), which never overwrites, and the next attempt finds it fresh.
 */
function takeOver(file: string, staleContent: string): void {
  const aside = `${file}.stale-${randomUUID()}`;
  try {
    renameSync(file, aside);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw error;
  }
  try {
    if (readFileSync(aside, 'utf8') !== staleContent) linkSync(aside, file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  } finally {
    unlinkSync(aside);
  }
}
