import type { DecisionRecord, DecisionRecorder } from '../decision-record';
import { clientOf, SUPPRESSED_ACTION, UnauthenticatedSuppression } from './unauthenticated-suppression';

class MemoryRecorder implements DecisionRecorder {
  readonly records: DecisionRecord[] = [];
  closed = false;
  record(record: DecisionRecord): void {
    this.records.push(record);
  }
  recordDurably(record: DecisionRecord): Promise<void> {
    this.records.push(record);
    return Promise.resolve();
  }
  async flush(): Promise<void> {}
  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }
  get summaries() {
    return this.records.filter((record) => record.action === SUPPRESSED_ACTION);
  }
  get requests() {
    return this.records.filter((record) => record.action !== SUPPRESSED_ACTION);
  }
}

const MINUTE = Date.UTC(2026, 10, 30, 10, 0, 0);

let n = 0;
function request(clientAddress: string | null, status = 401): DecisionRecord {
  n += 1;
  return {
    id: `id-${n}`,
    time: new Date(MINUTE),
    requestId: `request-${n}`,
    subject: null,
    userId: null,
    organization: null,
    action: 'project:read',
    resource: { type: 'project' },
    method: 'GET',
    path: '/orgs/acme/projects/api',
    allow: false,
    status,
    reasons: ['missing bearer token'],
    policyRevision: null,
    evalLatencyUs: null,
    input: null,
    clientAddress,
  };
}

/** The clock starts 5 s into MINUTE; sweeps happen when a test calls sweep(). */
function setUp(perMinute: number, options: { maxClients?: number } = {}) {
  const clock = { now: MINUTE + 5_000 };
  const inner = new MemoryRecorder();
  const suppression = new UnauthenticatedSuppression(inner, { perMinute, now: () => clock.now, sweepIntervalMs: 3_600_000, ...options });
  return { clock, inner, suppression, request };
}

afterEach(() => jest.useRealTimers());

describe('UnauthenticatedSuppression', () => {
  it('records the first N 401s of a client in a minute and summarizes the rest once the minute has ended', () => {
    const { clock, inner, suppression, request } = setUp(5);
    for (let i = 0; i < 20; i++) suppression.record(request('203.0.113.7'));
    expect(inner.requests).toHaveLength(5);
    suppression.sweep();
    expect(inner.summaries).toEqual([]);

    clock.now = MINUTE + 60_000;
    suppression.sweep();
    expect(inner.summaries).toEqual([
      expect.objectContaining({
        action: SUPPRESSED_ACTION,
        status: 401,
        allow: false,
        resource: { type: 'client', address: '203.0.113.7' },
        reasons: ['15 unauthenticated requests from 203.0.113.7 suppressed in the minute starting 2026-11-30T10:00:00.000Z'],
        code: 'suppressed',
        codeParams: { count: 15, client: '203.0.113.7' },
      }),
    ]);
    suppression.sweep();
    expect(inner.summaries).toHaveLength(1);
  });

  it('counts each client and each minute on its own, and writes no summary when nothing was suppressed', () => {
    const { clock, inner, suppression, request } = setUp(2);
    for (let i = 0; i < 3; i++) suppression.record(request('198.51.100.1'));
    for (let i = 0; i < 2; i++) suppression.record(request('198.51.100.2'));
    clock.now = MINUTE + 61_000;
    // The new minute's first request summarizes the old minute for that client at once.
    suppression.record(request('198.51.100.1'));
    expect(inner.summaries.map((record) => record.reasons[0])).toEqual([
      '1 unauthenticated request from 198.51.100.1 suppressed in the minute starting 2026-11-30T10:00:00.000Z',
    ]);
    suppression.record(request('198.51.100.1'));
    suppression.record(request('198.51.100.1'));
    expect(inner.requests).toHaveLength(2 + 2 + 2);
    suppression.sweep();
    expect(inner.summaries).toHaveLength(1);
  });

  it('counts an IPv6 client by its /64, so rotating addresses within it gains nothing', () => {
    const { inner, suppression, request } = setUp(2);
    for (const address of ['2001:db8:1:2::1', '2001:db8:1:2::2', '2001:0db8:0001:0002:aaaa::3', '2001:db8:1:3::1'])
      suppression.record(request(address));
    expect(inner.requests.map((record) => record.clientAddress)).toEqual(['2001:db8:1:2::1', '2001:db8:1:2::2', '2001:db8:1:3::1']);
  });

  it.each([
    ['203.0.113.7', '203.0.113.7'],
    ['::ffff:203.0.113.7', '203.0.113.7'],
    ['2001:db8:1:2:3:4:5:6', '2001:db8:1:2::/64'],
    ['2001:db8::1', '2001:db8:0:0::/64'],
    ['fe80::1%eth0', 'fe80:0:0:0::/64'],
    ['::1', '0:0:0:0::/64'],
    [null, 'unknown'],
  ])('counts %j as the client %j', (address, client) => {
    expect(clientOf(address)).toBe(client);
  });

  it('passes every other status through, unlimited', async () => {
    const { inner, suppression, request } = setUp(0);
    for (let i = 0; i < 10; i++) suppression.record(request('203.0.113.7', 403));
    await suppression.recordDurably(request('203.0.113.7', 200));
    suppression.record(request('203.0.113.7', 401));
    expect(inner.requests.map((record) => record.status)).toEqual([...(Array(10).fill(403) as number[]), 200]);
  });

  it('summarizes a client pushed out of the bounded table before forgetting it', () => {
    const { inner, suppression, request } = setUp(1, { maxClients: 2 });
    for (const client of ['10.0.0.1', '10.0.0.1', '10.0.0.2', '10.0.0.3']) suppression.record(request(client));
    expect(inner.summaries.map((record) => record.reasons[0])).toEqual([
      '1 unauthenticated request from 10.0.0.1 suppressed in the minute starting 2026-11-30T10:00:00.000Z',
    ]);
  });

  it('on close summarizes the minute in progress, then closes the recorder underneath', async () => {
    const { inner, suppression, request } = setUp(1);
    for (let i = 0; i < 4; i++) suppression.record(request(null));
    await suppression.close();
    expect(inner.summaries.map((record) => record.reasons[0])).toEqual([
      '3 unauthenticated requests from unknown suppressed in the minute starting 2026-11-30T10:00:00.000Z',
    ]);
    expect(inner.closed).toBe(true);
    // A late record is not counted into a summary no one writes any more: it goes on (to the spool).
    suppression.record(request(null));
    expect(inner.requests).toHaveLength(2);
  });

  it('sweeps on its own timer', () => {
    jest.useFakeTimers();
    const clock = { now: MINUTE };
    const inner = new MemoryRecorder();
    const suppression = new UnauthenticatedSuppression(inner, { perMinute: 0, now: () => clock.now, sweepIntervalMs: 1_000 });
    suppression.record(request('192.0.2.1'));
    clock.now = MINUTE + 60_000;
    jest.advanceTimersByTime(1_000);
    expect(inner.summaries).toHaveLength(1);
    void suppression.close();
  });
});
