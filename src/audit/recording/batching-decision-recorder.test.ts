// The recorder's batching, ordering, flush, retry and spool logic, with a fake store and a
// real spool file in a temporary folder.
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { BatchingDecisionRecorder, type BatchingDecisionRecorderOptions } from './batching-decision-recorder';
import { prepareDecision, type PreparedDecision } from '../chain/decision-chain';
import { DecisionMask } from './decision-mask';
import type { DecisionRecord } from '../decision-record';
import { DecisionSpool } from './decision-spool';
import type { AppendResult, DecisionStore } from '../chain/pg-decision-store';
import { waitFor } from '../../../test/support/wait-for';

function decision(n: number): DecisionRecord {
  return {
    id: randomUUID(),
    time: new Date(),
    requestId: `request-${n}`,
    subject: 'alice',
    userId: null,
    organization: 'acme',
    action: 'project:read',
    resource: { type: 'project', org: 'acme', project: 'web' },
    method: 'GET',
    path: '/orgs/acme/projects/web',
    allow: true,
    status: 200,
    reasons: [],
    policyRevision: 'rev-1',
    evalLatencyUs: 42,
    input: { request: { id: `request-${n}`, headers: { cookie: 'session=secret' } } },
  };
}

const requestIdOf = (record: PreparedDecision) => (JSON.parse(record.content) as { request_id: string }).request_id;

/** Remembers every batch; fails the next `failures` writes; skips ids it already has, like the real store. */
class FakeStore implements DecisionStore {
  readonly batches: string[][] = [];
  readonly records: PreparedDecision[] = [];
  private readonly ids = new Set<string>();
  failures = 0;
  attempts = 0;
  /** Attempts that have thrown. */
  failed = 0;

  async append(records: readonly PreparedDecision[]): Promise<AppendResult> {
    this.attempts += 1;
    await new Promise((resolve) => setImmediate(resolve));
    if (this.failures > 0) {
      this.failures -= 1;
      this.failed += 1;
      throw new Error('connection terminated');
    }
    const fresh = records.filter((record) => !this.ids.has(record.id));
    for (const record of fresh) this.ids.add(record.id);
    this.records.push(...fresh);
    this.batches.push(fresh.map(requestIdOf));
    return { inserted: fresh.length, skipped: records.length - fresh.length };
  }

  get written(): string[] {
    return this.batches.flat();
  }
}

const requestIds = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => `request-${from + i}`);
const activeTimers = () => process.getActiveResourcesInfo().filter((resource) => resource === 'Timeout').length;

let recorders: BatchingDecisionRecorder[] = [];

function recorderWith(store: DecisionStore, options: Partial<BatchingDecisionRecorderOptions> = {}) {
  const errors: Error[] = [];
  const recorder = new BatchingDecisionRecorder(store, {
    retryInitialMs: 1,
    retryMaxMs: 4,
    onError: (error) => errors.push(error),
    ...options,
  });
  recorders.push(recorder);
  return { recorder, errors };
}

afterEach(async () => {
  await Promise.all(recorders.map((recorder) => recorder.close()));
  recorders = [];
});

describe('BatchingDecisionRecorder', () => {
  it('returns from record() before anything is written', () => {
    const store = new FakeStore();
    const { recorder } = recorderWith(store);
    recorder.record(decision(0));
    expect(store.attempts).toBe(0);
    expect(recorder.backlog).toBe(1);
  });

  it('writes a partial batch after the delay', async () => {
    const store = new FakeStore();
    const { recorder } = recorderWith(store, { delayMs: 200 });
    const started = Date.now();
    recorder.record(decision(0));
    recorder.record(decision(1));
    await new Promise(setImmediate);
    expect(store.attempts).toBe(0);
    await waitFor(() => store.batches.length > 0, { what: 'the batch to be written' });
    // Timers count from the event loop's cached clock, which may lag a little behind Date.now().
    expect(Date.now() - started).toBeGreaterThanOrEqual(150);
    expect(store.batches).toEqual([['request-0', 'request-1']]);
    expect(recorder.backlog).toBe(0);
  });

  it('writes a full batch without waiting for the delay; the partial rest waits for it', async () => {
    const store = new FakeStore();
    const { recorder } = recorderWith(store, { batchSize: 3, delayMs: 60_000 });
    for (let n = 0; n < 7; n++) recorder.record(decision(n));
    await waitFor(() => store.written.length === 6, { what: 'the two full batches to be written' });
    expect(store.batches).toEqual([requestIds(0, 3), requestIds(3, 6)]);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(store.attempts).toBe(2);
    expect(recorder.backlog).toBe(1);
    await recorder.flush();
    expect(store.batches).toEqual([requestIds(0, 3), requestIds(3, 6), ['request-6']]);
  });

  it('lets records that arrive while a batch is written fill the next one, due when its first record has waited the delay', async () => {
    // Written right behind each other, they went a few at a time, each write a transaction of its own.
    const store = new (class extends FakeStore {
      started = 0;
      override async append(records: readonly PreparedDecision[]): Promise<AppendResult> {
        this.started += 1;
        await new Promise((resolve) => setTimeout(resolve, 30));
        return super.append(records);
      }
    })();
    const { recorder } = recorderWith(store, { delayMs: 400 });
    recorder.record(decision(0));
    // One record during the first write (it takes 30 ms), one after it: both go in the second batch.
    await waitFor(() => store.started === 1, { what: 'the first write to start', everyMs: 1 });
    const firstRecordOfSecondBatch = Date.now();
    recorder.record(decision(1));
    await waitFor(() => store.batches.length === 1, { what: 'the first batch to be written' });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(store.batches).toEqual([['request-0']]);
    recorder.record(decision(2));
    await waitFor(() => store.batches.length === 2, { what: 'the second batch to be written' });
    expect(store.batches).toEqual([['request-0'], ['request-1', 'request-2']]);
    // Due 400 ms after request-1 was queued (the timer's clock may lag Date.now() a little), not right after the first write.
    expect(Date.now() - firstRecordOfSecondBatch).toBeGreaterThanOrEqual(380);
  });

  it('prepares a batch a slice at a time, letting the event loop turn in between', async () => {
    const store = new FakeStore();
    // Counts records as they are prepared (masking is the first step of preparing one).
    const counting = new (class extends DecisionMask {
      prepared = 0;
      override apply(record: DecisionRecord): DecisionRecord {
        this.prepared += 1;
        return super.apply(record);
      }
    })([]);
    const { recorder } = recorderWith(store, { batchSize: 500, mask: counting });
    for (let n = 0; n < 500; n++) recorder.record(decision(n));
    // What a request waiting for its turn sees: how many records were prepared since the last turn.
    const seen: number[] = [];
    let ticking = true;
    const tick = () => {
      seen.push(counting.prepared);
      if (ticking) setImmediate(tick);
    };
    setImmediate(tick);
    await recorder.flush();
    ticking = false;
    expect(store.written).toEqual(requestIds(0, 500));
    const steps = seen.slice(1).map((count, i) => count - seen[i]!);
    expect(Math.max(...steps)).toBeLessThanOrEqual(32);
    expect(seen.filter((count) => count > 0 && count < 500).length).toBeGreaterThanOrEqual(500 / 32 - 2);
  });

  it('keeps order across batches', async () => {
    const store = new FakeStore();
    const { recorder } = recorderWith(store, { batchSize: 100 });
    for (let n = 0; n < 1000; n++) recorder.record(decision(n));
    await recorder.flush();
    expect(store.written).toEqual(requestIds(0, 1000));
    expect(store.batches.every((batch) => batch.length <= 100)).toBe(true);
  });

  it('resolves flush() once everything queued before it is written, without waiting for the delay', async () => {
    const store = new FakeStore();
    const { recorder } = recorderWith(store, { delayMs: 60_000 });
    recorder.record(decision(0));
    recorder.record(decision(1));
    const flushed = recorder.flush();
    recorder.record(decision(2));
    await flushed;
    expect(store.written.slice(0, 2)).toEqual(['request-0', 'request-1']);
  });

  it('resolves flush() at once when nothing is queued', async () => {
    const store = new FakeStore();
    const { recorder } = recorderWith(store);
    await recorder.flush();
    expect(store.attempts).toBe(0);
  });

  it('retries a failed write with the same records, in order, and reports each failure', async () => {
    const store = new FakeStore();
    store.failures = 3;
    const { recorder, errors } = recorderWith(store, { batchSize: 2 });
    for (let n = 0; n < 5; n++) recorder.record(decision(n));
    await recorder.flush();

    expect(store.written).toEqual(requestIds(0, 5));
    expect(store.attempts).toBe(3 + 3);
    expect(errors).toHaveLength(3);
    expect(errors[0]?.message).toMatch(/could not write 2 decision records \(attempt 1/);
    expect((errors[0]?.cause as Error).message).toBe('connection terminated');
  });

  it('backs off exponentially between retries, up to the maximum', async () => {
    const store = new FakeStore();
    store.failures = 4;
    const started = Date.now();
    const { recorder } = recorderWith(store, { retryInitialMs: 20, retryMaxMs: 40 });
    recorder.record(decision(0));
    await recorder.flush();
    // 20 + 40 + 40 + 40 ms of pauses.
    expect(Date.now() - started).toBeGreaterThanOrEqual(135);
  });

  it('keeps every record while writes fail, reports the backlog once it is too long, and writes them all later', async () => {
    const store = new FakeStore();
    store.failures = Number.POSITIVE_INFINITY;
    const { recorder, errors } = recorderWith(store, { batchSize: 2, delayMs: 1, maxBacklog: 3 });
    for (let n = 0; n < 5; n++) recorder.record(decision(n));
    await waitFor(() => store.attempts >= 5, { what: 'several failed attempts' });

    expect(recorder.backlog).toBe(5);
    const backlogErrors = errors.filter((error) => /waiting to be written/.test(error.message));
    expect(backlogErrors).toHaveLength(1);
    expect(backlogErrors[0]?.message).toMatch(/^4 decision records are waiting/);

    store.failures = 0;
    await recorder.flush();
    expect(store.written).toEqual(requestIds(0, 5));
    expect(recorder.backlog).toBe(0);
  });

  it('keeps writing when the error callback throws', async () => {
    const store = new FakeStore();
    store.failures = 1;
    const { recorder } = recorderWith(store, {
      onError: () => {
        throw new Error('logger broke');
      },
    });
    recorder.record(decision(0));
    await recorder.flush();
    expect(store.written).toEqual(['request-0']);
  });

  it('writes everything on close(); without a spool, a record arriving afterwards is reported, never thrown', async () => {
    const store = new FakeStore();
    const { recorder, errors } = recorderWith(store, { delayMs: 60_000 });
    recorder.record(decision(0));
    await recorder.close();
    expect(store.written).toEqual(['request-0']);
    const late = decision(1);
    expect(() => recorder.record(late)).not.toThrow();
    await waitFor(() => errors.length > 0, { what: 'the late record to be reported' });
    expect(errors.map((error) => error.message)).toEqual([
      `decision ${late.id} arrived after the decision recorder closed and there is no spool to keep it`,
    ]);
    await expect(recorder.recordDurably(decision(2))).rejects.toThrow(/after the decision recorder closed/);
    expect(store.written).toEqual(['request-0']);
  });

  it('gives up what it could not write at a shutdown out of time, without a spool: close() resolves and no retry goes on', async () => {
    const store = new FakeStore();
    store.failures = Number.MAX_SAFE_INTEGER;
    const { recorder, errors } = recorderWith(store, { delayMs: 1 });
    for (let n = 0; n < 3; n++) recorder.record(decision(n));
    const closing = recorder.close();
    await waitFor(() => store.failed >= 2, { what: 'the writes to fail' });

    expect(await recorder.spoolUnwritten()).toEqual({ spooled: 0, lost: 3 });

    await closing;
    await recorder.close();
    expect(recorder.memoryBacklog).toBe(0);
    expect(errors.map((error) => error.message)).toContain('3 decision records were neither written nor spooled before shutdown');
    const attempts = store.attempts;
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(store.attempts).toBe(attempts);
  });

  it('does not keep the process alive with its batch or retry timers', async () => {
    const before = activeTimers();
    const idle = recorderWith(new FakeStore(), { delayMs: 60_000 }).recorder;
    idle.record(decision(0));
    expect(activeTimers()).toBe(before);

    // The retry is 3 s away, far longer than this test takes to reach the flush on a loaded machine.
    const failing = new FakeStore();
    failing.failures = 1;
    const retrying = recorderWith(failing, { delayMs: 1, retryInitialMs: 3_000, retryMaxMs: 3_000 }).recorder;
    retrying.record(decision(1));
    await waitFor(() => failing.failed > 0, { what: 'the first attempt to fail' });
    await new Promise((resolve) => setImmediate(resolve));
    expect(failing.attempts).toBe(1);
    expect(activeTimers()).toBe(before);

    // An awaited flush holds the process open until the records are written: the pause before the
    // retry is referenced from the moment a flush waits on it.
    const flushed = retrying.flush();
    await new Promise((resolve) => setImmediate(resolve));
    expect(activeTimers()).toBe(before + 1);
    await flushed;
    expect(failing.written).toEqual(['request-1']);
  });
});

describe('BatchingDecisionRecorder with a spool', () => {
  let dir: string;
  let spool: DecisionSpool;

  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'portcullis-spool-'));
    spool = await DecisionSpool.open(dir);
  });

  afterEach(async () => {
    await Promise.all(recorders.map((recorder) => recorder.close()));
    recorders = [];
    await spool.close();
    await rm(dir, { recursive: true, force: true });
  });

  const spooledRequestIds = async () =>
    (await readFile(spool.file, 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map((line) => (JSON.parse(line) as { request_id: string }).request_id);

  it('moves a batch the store refuses to the spool, and later batches behind it, so memory empties', async () => {
    const store = new FakeStore();
    store.failures = Number.POSITIVE_INFINITY;
    const { recorder, errors } = recorderWith(store, { spool, batchSize: 10, retryInitialMs: 5, retryMaxMs: 5 });
    for (let n = 0; n < 35; n++) recorder.record(decision(n));
    await waitFor(() => recorder.spoolBacklog === 35, { what: 'every record to be spooled' });

    expect(recorder.memoryBacklog).toBe(0);
    expect(recorder.spoolBacklog).toBe(35);
    expect(recorder.backlog).toBe(35);
    expect(await spooledRequestIds()).toEqual(requestIds(0, 35));
    // One direct attempt fails; the later batches go straight to the spool.
    expect(errors.some((error) => /spooling them to .*decisions\.ndjson/.test(error.message))).toBe(true);
  });

  it('replays the spool in order once the store accepts, then writes directly and empties the spool file', async () => {
    const store = new FakeStore();
    store.failures = Number.POSITIVE_INFINITY;
    const { recorder } = recorderWith(store, { spool, batchSize: 10, retryInitialMs: 5, retryMaxMs: 5 });
    for (let n = 0; n < 25; n++) recorder.record(decision(n));
    await waitFor(() => recorder.spoolBacklog === 25, { what: 'every record to be spooled' });
    store.failures = 0;
    for (let n = 25; n < 30; n++) recorder.record(decision(n));
    await recorder.flush();

    expect(store.records.map(requestIdOf)).toEqual(requestIds(0, 30));
    expect(recorder.backlog).toBe(0);
    expect(await readFile(spool.file, 'utf8')).toBe('');

    recorder.record(decision(30));
    await recorder.flush();
    expect(store.written.at(-1)).toBe('request-30');
  });

  it('writes each spooled record exactly once when a replayed batch had already been stored', async () => {
    const store = new FakeStore();
    const records = Array.from({ length: 5 }, (_, n) => decision(n));
    // The database committed these, but the acknowledgement was lost: they were spooled too.
    const { recorder: first } = recorderWith(store);
    for (const record of records.slice(0, 3)) first.record(record);
    await first.flush();
    await spool.append(records.map(prepareDecision));

    const { recorder } = recorderWith(store, { spool });
    await recorder.flush();
    expect(store.records.map(requestIdOf)).toEqual(requestIds(0, 5));
  });

  it('replays records an earlier process left in the spool before anything new', async () => {
    await spool.append([decision(0), decision(1)].map(prepareDecision));
    await spool.close();
    spool = await DecisionSpool.open(dir);
    expect(spool.pending).toBe(2);

    const store = new FakeStore();
    const { recorder } = recorderWith(store, { spool });
    recorder.record(decision(2));
    await recorder.flush();
    expect(store.written).toEqual(requestIds(0, 3));
  });

  it('resolves recordDurably once the record is stored', async () => {
    const store = new FakeStore();
    const { recorder } = recorderWith(store, { spool, delayMs: 60_000 });
    await recorder.recordDurably(decision(0));
    expect(store.written).toEqual(['request-0']);
  });

  it('resolves recordDurably once the record is in the spool when the store refuses it', async () => {
    const store = new FakeStore();
    store.failures = Number.POSITIVE_INFINITY;
    const { recorder } = recorderWith(store, { spool });
    await recorder.recordDurably(decision(0));
    expect(await spooledRequestIds()).toEqual(['request-0']);
  });

  it('rejects recordDurably and takes the record back when neither the store nor the spool accepts it', async () => {
    const store = new FakeStore();
    store.failures = Number.POSITIVE_INFINITY;
    await spool.close(); // every append now fails
    const { recorder } = recorderWith(store, { spool });
    recorder.record(decision(0));
    await expect(recorder.recordDurably(decision(1))).rejects.toThrow(/could not be made durable/);
    // The plain record stays queued for a retry; the strict one is gone (its request was refused).
    expect(recorder.memoryBacklog).toBe(1);
    store.failures = 0;
    spool = await DecisionSpool.open(dir);
  });

  it('close() spools what PostgreSQL cannot take and resolves', async () => {
    const store = new FakeStore();
    store.failures = Number.POSITIVE_INFINITY;
    const { recorder } = recorderWith(store, { spool, delayMs: 60_000 });
    for (let n = 0; n < 3; n++) recorder.record(decision(n));
    await recorder.close();
    expect(await spooledRequestIds()).toEqual(requestIds(0, 3));
    expect(recorder.memoryBacklog).toBe(0);
  });

  it('sends a record that arrives after close() to the spool, and never throws', async () => {
    const store = new FakeStore();
    const { recorder } = recorderWith(store, { spool, delayMs: 60_000 });
    recorder.record(decision(0));
    await recorder.close();
    expect(() => recorder.record(decision(1))).not.toThrow();
    await recorder.recordDurably(decision(2));
    await waitFor(async () => (await spooledRequestIds()).length === 2, { what: 'both late records in the spool' });
    expect(await spooledRequestIds()).toEqual(['request-1', 'request-2']);
    expect(store.written).toEqual(['request-0']);
  });

  /** A store whose writes hang until released, then store as FakeStore does. */
  function hangingStore(): { hanging: DecisionStore; release: () => void } {
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const store = new FakeStore();
    return { hanging: { append: async (records) => (await released, store.append(records)) }, release };
  }

  it('spoolUnwritten() copies what a hanging write has not stored to the spool, without waiting for that write', async () => {
    const { hanging, release } = hangingStore();
    const { recorder } = recorderWith(hanging, { spool, delayMs: 1 });
    for (let n = 0; n < 3; n++) recorder.record(decision(n));
    const closing = recorder.close();
    expect(await recorder.spoolUnwritten()).toEqual({ spooled: 3, lost: 0 });
    expect(await spooledRequestIds()).toEqual(requestIds(0, 3));
    expect(recorder.memoryBacklog).toBe(0);
    expect(() => recorder.record(decision(3))).not.toThrow();
    await waitFor(async () => (await spooledRequestIds()).length === 4, { what: 'the late record in the spool' });
    // The write that hung may still finish: the store then skips on replay what it already has.
    release();
    await closing;
  });

  it('spoolUnwritten() counts as lost what the spool would not take, and reports it', async () => {
    const { hanging, release } = hangingStore();
    const { recorder, errors } = recorderWith(hanging, { spool, delayMs: 1 });
    for (let n = 0; n < 3; n++) recorder.record(decision(n));
    const closing = recorder.close();
    await spool.close();
    expect(await recorder.spoolUnwritten()).toEqual({ spooled: 0, lost: 3 });
    expect(errors.map((error) => error.message)).toContain('3 decision records were neither written nor spooled before shutdown');
    expect(recorder.memoryBacklog).toBe(0);
    release();
    await closing;
  });

  it('masks the input before anything is stored or spooled', async () => {
    const store = new FakeStore();
    const { recorder } = recorderWith(store, { mask: new DecisionMask(['/request/headers/cookie']) });
    const record = decision(0);
    recorder.record(record);
    await recorder.flush();
    const stored = JSON.parse(store.records[0]!.content) as { input: { request: { headers: Record<string, string> } } };
    expect(stored.input.request.headers).toEqual({});
    expect(store.records[0]!.content).not.toContain('session=secret');
    // The pipeline's own object is left alone.
    expect((record.input as { request: { headers: Record<string, string> } }).request.headers.cookie).toBe('session=secret');
  });

  it('tells onDurable about records in order once they are stored or spooled', async () => {
    const store = new FakeStore();
    const told: string[] = [];
    const { recorder } = recorderWith(store, {
      spool,
      batchSize: 2,
      delayMs: 1,
      onDurable: (records) => told.push(...records.map(requestIdOf)),
    });
    for (let n = 0; n < 3; n++) recorder.record(decision(n));
    await recorder.flush();
    store.failures = Number.POSITIVE_INFINITY;
    recorder.record(decision(3));
    await waitFor(() => told.length === 4, { what: 'the spooled record to be durable' });
    expect(told).toEqual(requestIds(0, 4));
  });
});
