// The spool file on a real filesystem: appends survive reopening, reads come back in order,
// a torn tail is cut, the file empties once replayed, and one process owns it.
import { spawnSync } from 'node:child_process';
import { appendFile, mkdtemp, readFile, readlink, rm, stat, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { waitFor } from '../../../test/support/wait-for';
import { ConfigError } from '../../base/errors';
import { prepareDecision, type PreparedDecision } from '../chain/decision-chain';
import type { DecisionRecord } from '../decision-record';
import { DecisionSpool } from './decision-spool';

const record = (n: number): PreparedDecision =>
  prepareDecision({
    id: `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`,
    time: new Date(n),
    requestId: `r-${n}`,
    subject: null,
    userId: null,
    organization: null,
    action: 'a:b',
    resource: { type: 'a' },
    method: 'GET',
    path: '/',
    allow: false,
    status: 401,
    reasons: [],
    policyRevision: null,
    evalLatencyUs: null,
    input: { note: 'x'.repeat(n % 7) },
  } satisfies DecisionRecord);

let dir: string;
let spool: DecisionSpool | undefined;

beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'portcullis-spool-test-'));
});
afterEach(async () => {
  await spool?.close();
  spool = undefined;
  await rm(dir, { recursive: true, force: true });
});

const ids = (records: PreparedDecision[]) => records.map((prepared) => prepared.id.slice(-3));

describe('DecisionSpool', () => {
  it('hands records back in order, in batches, and empties the file once all are consumed', async () => {
    spool = await DecisionSpool.open(dir);
    await spool.append([0, 1, 2].map(record));
    await spool.append([3, 4].map(record));
    expect(spool.pending).toBe(5);

    const first = await spool.peek(2);
    expect(ids(first.records)).toEqual(['000', '001']);
    expect(ids((await spool.peek(2)).records)).toEqual(['000', '001']);
    await spool.consume(first.records.length, first.bytes);
    const rest = await spool.peek(10);
    expect(ids(rest.records)).toEqual(['002', '003', '004']);
    await spool.consume(rest.records.length, rest.bytes);
    expect(spool.pending).toBe(0);
    expect(await readFile(spool.file, 'utf8')).toBe('');
  });

  it('keeps records across a restart and cuts a torn last line', async () => {
    spool = await DecisionSpool.open(dir);
    await spool.append([record(1), record(2)]);
    await spool.close();
    await appendFile(path.join(dir, 'decisions.ndjson'), '{"id":"half a rec');
    spool = await DecisionSpool.open(dir);
    expect(spool.pending).toBe(2);
    expect(ids((await spool.peek(10)).records)).toEqual(['001', '002']);
    expect((await readFile(spool.file, 'utf8')).endsWith('}\n')).toBe(true);
  });

  it('reads across chunk boundaries', async () => {
    spool = await DecisionSpool.open(dir);
    const big = Array.from({ length: 3000 }, (_, n) => ({
      ...record(n),
      content: record(n).content.replace('"note":"', `"note":"${'y'.repeat(700)}`),
    }));
    await spool.append(big);
    const all: PreparedDecision[] = [];
    for (;;) {
      const batch = await spool.peek(700);
      if (batch.records.length === 0) break;
      all.push(...batch.records);
      await spool.consume(batch.records.length + batch.corrupt, batch.bytes);
    }
    expect(all.map((prepared) => prepared.id)).toEqual(big.map((prepared) => prepared.id));
  });

  it('counts and passes over a line that is not a record', async () => {
    await writeFile(path.join(dir, 'decisions.ndjson'), `${record(1).content}\nnot json\n${record(2).content}\n`);
    spool = await DecisionSpool.open(dir);
    const batch = await spool.peek(10);
    expect(ids(batch.records)).toEqual(['001', '002']);
    expect(batch.corrupt).toBe(1);
  });

  it('refuses a directory whose lock another instance holds, even when the pid written there is ours (every container is PID 1)', async () => {
    const other = { instance: 'another-container', host: 'gateway-b', pid: process.pid, since: new Date().toISOString() };
    await writeFile(path.join(dir, 'spool.lock'), JSON.stringify(other));
    await expect(DecisionSpool.open(dir)).rejects.toThrow(ConfigError);
    await expect(DecisionSpool.open(dir)).rejects.toThrow(
      /used by another running Portcullis, instance another-container on gateway-b \(pid \d+\)/,
    );
    expect(JSON.parse(await readFile(path.join(dir, 'spool.lock'), 'utf8'))).toEqual(other);
  });

  it('takes over the lock of a crashed owner once its heartbeat is older than the stale age', async () => {
    const lockFile = path.join(dir, 'spool.lock');
    await writeFile(lockFile, JSON.stringify({ instance: 'crashed', host: 'gateway-b', pid: 1, since: '2026-11-30T00:00:00Z' }));
    const longAgo = new Date(Date.now() - 31_000);
    await utimes(lockFile, longAgo, longAgo);
    spool = await DecisionSpool.open(dir);
    const owner = JSON.parse(await readFile(lockFile, 'utf8')) as { instance: string };
    expect(owner).toMatchObject({ host: os.hostname(), pid: process.pid });
    expect(owner.instance).not.toBe('crashed');
    await spool.close();
    spool = undefined;
    await expect(readFile(lockFile, 'utf8')).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('takes over at once a fresh lock whose owner was a process of this machine that is gone', async () => {
    const gone = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout;
    const pidns = await readlink('/proc/self/ns/pid').catch(() => undefined);
    await writeFile(
      path.join(dir, 'spool.lock'),
      JSON.stringify({ instance: 'crashed-here', host: os.hostname(), pidns, pid: Number(gone), since: new Date().toISOString() }),
    );
    spool = await DecisionSpool.open(dir);
    expect(JSON.parse(await readFile(path.join(dir, 'spool.lock'), 'utf8'))).toMatchObject({ pid: process.pid });
  });

  it('keeps its lock fresh with a heartbeat while open, and releases it on close', async () => {
    spool = await DecisionSpool.open(dir, { staleMs: 300 });
    const lockFile = path.join(dir, 'spool.lock');
    const first = (await stat(lockFile)).mtimeMs;
    await waitFor(async () => (await stat(lockFile)).mtimeMs > first, { what: 'a heartbeat' });
    await new Promise((resolve) => setTimeout(resolve, 400)); // past the stale age: only the heartbeat keeps it fresh
    expect(Date.now() - (await stat(lockFile)).mtimeMs).toBeLessThan(300);
    await spool.close();
    spool = undefined;
    await expect(stat(lockFile)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('refuses a second gateway in the same process', async () => {
    spool = await DecisionSpool.open(dir);
    await expect(DecisionSpool.open(dir)).rejects.toThrow(/already used by another gateway in this process/);
  });
});
