// The recorder's batching, ordering, flush and retry logic, with a fake store.
import { randomUUID } from 'node:crypto';
import { BatchingDecisionRecorder, type BatchingDecisionRecorderOptions } from './batching-decision-recorder';
import type { DecisionRecord } from './decision-record';
import type { DecisionStore } from './pg-decision-store';

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
    input: null,
  };
}

/** Remembers every batch; fails the next `failures` writes. */
class FakeStore implements DecisionStore {
  readonly batches: string[][] = [];
  failures = 0;
  attempts = 0;

  async insertMany(records: readonly DecisionRecord[]): Promise<void> {
    this.attempts += 1;
    await new Promise((resolve) => setImmediate(resolve));
    if (this.failures > 0) {
      this.failures -= 1;
      throw new Error('connection terminated');
    }
    this.batches.push(records.map((record) => record.requestId));
  }

  get written(): string[] {
    return this.batches.flat();
  }
}

const requestIds = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => `request-${from + i}`);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const activeTimers = () => process.getActiveResourcesInfo().filter((resource) => resource === 'Timeout').length;

let recorders: BatchingDecisionRecorder[] = [];

function recorderWith(store: DecisionStore, options: Partial<BatchingDecisionRecorderOptions> = {}) {
  const errors: Error[] = [];
  const recorder = new BatchingDecisionRecorder(store, { retryInitialMs: 1, retryMaxMs: 4, onError: (error) => errors.push(error), ...options });
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
    const { recorder } = recorderWith(store, { delayMs: 20 });
    recorder.record(decision(0));
    recorder.record(decision(1));
    await sleep(5);
    expect(store.attempts).toBe(0);
    await sleep(40);
    expect(store.batches).toEqual([['request-0', 'request-1']]);
    expect(recorder.backlog).toBe(0);
  });

  it('writes a full batch without waiting for the delay', async () => {
    const store = new FakeStore();
    const { recorder } = recorderWith(store, { batchSize: 3, delayMs: 60_000 });
    for (let n = 0; n < 7; n++) recorder.record(decision(n));
    await sleep(10);
    expect(store.batches).toEqual([requestIds(0, 3), requestIds(3, 6), ['request-6']]);
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
    await sleep(20);

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

  it('writes everything on close() and refuses records afterwards', async () => {
    const store = new FakeStore();
    const { recorder } = recorderWith(store, { delayMs: 60_000 });
    recorder.record(decision(0));
    await recorder.close();
    expect(store.written).toEqual(['request-0']);
    expect(() => recorder.record(decision(1))).toThrow(/closed/);
  });

  it('does not keep the process alive with its batch or retry timers', async () => {
    const before = activeTimers();
    const idle = recorderWith(new FakeStore(), { delayMs: 60_000 }).recorder;
    idle.record(decision(0));
    expect(activeTimers()).toBe(before);

    const failing = new FakeStore();
    failing.failures = 1;
    const retrying = recorderWith(failing, { delayMs: 1, retryInitialMs: 200, retryMaxMs: 200 }).recorder;
    retrying.record(decision(1));
    await sleep(20);
    expect(failing.attempts).toBe(1);
    expect(activeTimers()).toBe(before);

    // An awaited flush holds the process open until the records are written.
    const flushed = retrying.flush();
    expect(activeTimers()).toBe(before + 1);
    await flushed;
    expect(failing.written).toEqual(['request-1']);
  });
});
