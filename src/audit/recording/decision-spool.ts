// The local append-only spool (`audit.spool_dir`): decision records PostgreSQL could not take
// are appended here as NDJSON (one canonical record a line) and fsync'd before they count as
// durable; they are read back in order for replay and the file is truncated once all are in.
// One instance owns a spool directory at a time (spool-lock.ts: an instance id and a
// heartbeat, not a pid, so containers sharing a volume exclude each other too).
import { mkdir, open, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError } from '../../base/errors';
import { preparedFromContent, type PreparedDecision } from '../chain/decision-chain';
import { SpoolLock, type SpoolLockOptions } from './spool-lock';

const FILE = 'decisions.ndjson';
const READ_CHUNK = 1 << 20;
const NEWLINE = 0x0a;

/** Spool directories owned by this process: a second gateway in it gets a clearer refusal than the lock's. */
const ownedHere = new Set<string>();

export class DecisionSpool {
  /** Byte offset of the first record not yet replayed. */
  private readOffset = 0;
  /** Bytes in the file: everything before is complete lines. */
  private size: number;
  private records: number;
  /** Every file operation runs after the previous one: appends, reads and truncation never interleave. */
  private tail: Promise<unknown> = Promise.resolve();
  private closed = false;

  private constructor(
    readonly dir: string,
    private readonly lock: SpoolLock,
    private readonly handle: FileHandle,
    size: number,
    records: number,
  ) {
    this.size = size;
    this.records = records;
  }

  /**
   * Opens (creating) the spool in `dir` and takes its lock. Records left by an earlier process
   * are kept for replay; a torn last line (a crash mid-append, never acknowledged) is cut off.
   */
  static async open(dir: string, options: SpoolLockOptions = {}): Promise<DecisionSpool> {
    const resolved = path.resolve(dir);
    await mkdir(resolved, { recursive: true });
    if (ownedHere.has(resolved))
      throw new ConfigError(`audit.spool_dir: ${resolved} is already used by another gateway in this process; give each its own spool_dir`);
    const lock = SpoolLock.acquire(resolved, options);
    ownedHere.add(resolved);
    try {
      const handle = await open(path.join(resolved, FILE), 'a+');
      const { size, records, torn } = await completeLines(handle);
      if (torn) {
        await handle.truncate(size);
        await handle.datasync();
      }
      return new DecisionSpool(resolved, lock, handle, size, records);
    } catch (error) {
      ownedHere.delete(resolved);
      lock.release();
      throw error;
    }
  }

  get file(): string {
    return path.join(this.dir, FILE);
  }

  /** Records written and not yet replayed. */
  get pending(): number {
    return this.records;
  }

  /** Appends and fsyncs; when it resolves, the records survive a crash. */
  append(batch: readonly PreparedDecision[]): Promise<void> {
    return this.serially(async () => {
      if (batch.length === 0) return;
      if (this.lock.lost)
        throw new Error(
          `the spool ${this.file} was taken over by instance ${this.lock.lost} (this one's lock heartbeat had stalled); these records stay in memory`,
        );
      const bytes = Buffer.from(batch.map((record) => `${record.content}\n`).join(''), 'utf8');
      try {
        await this.handle.appendFile(bytes);
        await this.handle.datasync();
      } catch (error) {
        // Cut a partial append so the file stays whole lines; the caller keeps the records.
        await this.handle.truncate(this.size).catch(() => undefined);
        throw new Error(`could not append ${batch.length} decision records to the spool ${this.file}: ${(error as Error).message}`, {
          cause: error,
        });
      }
      this.size += bytes.length;
      this.records += batch.length;
    });
  }

  /**
   * Up to `max` of the oldest records not yet replayed, without consuming them; `bytes` is
   * what consume() needs. A line that is not a record is counted in `corrupt` and passed over.
   */
  peek(max: number): Promise<{ records: PreparedDecision[]; bytes: number; corrupt: number }> {
    return this.serially(async () => {
      const records: PreparedDecision[] = [];
      let corrupt = 0;
      let bytes = 0;
      let offset = this.readOffset;
      let buffered = Buffer.alloc(0);
      while (records.length + corrupt < max && offset < this.size) {
        const chunk = Buffer.alloc(Math.min(READ_CHUNK, this.size - offset));
        const { bytesRead } = await this.handle.read(chunk, 0, chunk.length, offset);
        if (bytesRead === 0) break;
        offset += bytesRead;
        buffered = buffered.length > 0 ? Buffer.concat([buffered, chunk.subarray(0, bytesRead)]) : chunk.subarray(0, bytesRead);
        let start = 0;
        for (let end = buffered.indexOf(NEWLINE); end !== -1 && records.length + corrupt < max; end = buffered.indexOf(NEWLINE, start)) {
          try {
            records.push(preparedFromContent(buffered.toString('utf8', start, end)));
          } catch {
            corrupt += 1;
          }
          bytes += end + 1 - start;
          start = end + 1;
        }
        buffered = buffered.subarray(start);
      }
      return { records, bytes, corrupt };
    });
  }

  /** Marks what peek() returned as replayed; once everything is, the file is emptied. */
  consume(count: number, bytes: number): Promise<void> {
    return this.serially(async () => {
      this.readOffset += bytes;
      this.records -= count;
      if (this.readOffset >= this.size) {
        await this.handle.truncate(0);
        await this.handle.datasync();
        this.readOffset = 0;
        this.size = 0;
        this.records = 0;
      }
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.serially(() => this.handle.close());
    this.closed = true;
    ownedHere.delete(this.dir);
    this.lock.release();
  }

  private serially<T>(work: () => Promise<T>): Promise<T> {
    const run = this.tail.then(() => {
      if (this.closed) throw new Error(`the spool ${this.file} is closed`);
      return work();
    });
    this.tail = run.catch(() => undefined);
    return run;
  }
}

/** Size up to the end of the last complete line, how many lines that is, and whether bytes follow it. */
async function completeLines(handle: FileHandle): Promise<{ size: number; records: number; torn: boolean }> {
  const { size } = await handle.stat();
  const chunk = Buffer.alloc(READ_CHUNK);
  let records = 0;
  let lastNewline = -1;
  for (let offset = 0; offset < size;) {
    const { bytesRead } = await handle.read(chunk, 0, Math.min(READ_CHUNK, size - offset), offset);
    if (bytesRead === 0) break;
    for (let i = chunk.indexOf(NEWLINE, 0); i !== -1 && i < bytesRead; i = chunk.indexOf(NEWLINE, i + 1)) {
      records += 1;
      lastNewline = offset + i;
    }
    offset += bytesRead;
  }
  return { size: lastNewline + 1, records, torn: lastNewline + 1 !== size };
}
