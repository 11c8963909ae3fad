// The exporter's batching, retries and bounded buffer, with a fake sink.
import { PassThrough } from 'node:stream';
import { prepareDecision, type PreparedDecision } from '../chain/decision-chain';
import type { DecisionRecord } from '../decision-record';
import { StreamSink, type EventSink } from './decision-export-sinks';
import { DecisionExporter, type DecisionExporterOptions } from './decision-exporter';
import type { OpaDecisionEvent } from './opa-decision-event';
import { waitFor } from '../../../test/support/wait-for';

const record = (n: number): PreparedDecision => recordWith(n, {});

const recordWith = (n: number, overrides: Partial<DecisionRecord>): PreparedDecision =>
  prepareDecision({
    id: `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`,
    time: new Date(0),
    requestId: `r-${n}`,
    subject: null,
    userId: null,
    organization: null,
    action: 'organization:create',
    resource: { type: 'organization' },
    method: 'POST',
    path: '/orgs',
    allow: false,
    status: 401,
    reasons: ['no token'],
    policyRevision: null,
    evalLatencyUs: null,
    input: null,
    ...overrides,
  });

class FakeSink implements EventSink {
  readonly batches: string[][] = [];
  failures = 0;
  send(events: readonly OpaDecisionEvent[]): Promise<void> {
    if (this.failures > 0) {
      this.failures -= 1;
      return Promise.reject(new Error('collector down'));
    }
    this.batches.push(events.map((event) => event.decision_id.slice(-2)));
    return Promise.resolve();
  }
}

const options = (overrides: Partial<DecisionExporterOptions> = {}): DecisionExporterOptions => ({
  batchSize: 3,
  flushIntervalMs: 10,
  bufferSize: 100,
  retryInitialMs: 5,
  retryMaxMs: 5,
  path: 'portcullis/decision',
  labels: { id: 'test' },
  onError: () => undefined,
  ...overrides,
});

describe('DecisionExporter', () => {
  it('sends full batches at once and the rest after the flush interval, in order', async () => {
    const sink = new FakeSink();
    const exporter = new DecisionExporter(sink, options());
    exporter.enqueue([0, 1, 2, 3].map(record));
    await waitFor(() => sink.batches.flat().length === 4, { what: 'every event to be sent' });
    expect(sink.batches).toEqual([['00', '01', '02'], ['03']]);
    await exporter.close(100);
  });

  it('retries a failed batch and reports each failure', async () => {
    const sink = new FakeSink();
    sink.failures = 2;
    const errors: Error[] = [];
    const exporter = new DecisionExporter(sink, options({ onError: (error) => errors.push(error) }));
    exporter.enqueue([record(1)]);
    await waitFor(() => sink.batches.length > 0, { what: 'the batch to be sent' });
    expect(sink.batches).toEqual([['01']]);
    expect(errors.map((error) => error.message)).toEqual([
      'could not export 1 decision events (attempt 1); retrying',
      'could not export 1 decision events (attempt 2); retrying',
    ]);
    await exporter.close(100);
  });

  it('drops the oldest events beyond the buffer, counts them, and says so once', async () => {
    const sink = new FakeSink();
    sink.failures = Number.POSITIVE_INFINITY;
    const errors: Error[] = [];
    const exporter = new DecisionExporter(
      sink,
      options({ bufferSize: 4, flushIntervalMs: 60_000, batchSize: 100, onError: (error) => errors.push(error) }),
    );
    exporter.enqueue([0, 1, 2].map(record));
    exporter.enqueue([3, 4, 5].map(record));
    expect(exporter.pending).toBe(4);
    expect(exporter.dropped).toBe(2);
    expect(errors.filter((error) => /buffer is full/.test(error.message))).toHaveLength(1);
    sink.failures = 0;
    await exporter.close(200);
    expect(sink.batches.flat()).toEqual(['02', '03', '04', '05']);
  });

  it('writes one OPA event per line to a stream', async () => {
    const stream = new PassThrough();
    let text = '';
    stream.on('data', (chunk: Buffer) => (text += chunk.toString()));
    const exporter = new DecisionExporter(new StreamSink(stream), options());
    exporter.enqueue([record(7), recordWith(8, { code: 'unauthenticated', codeParams: {} })]);
    await exporter.close(100);
    const [uncoded, coded] = text
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(uncoded).toEqual({
      labels: { id: 'test' },
      decision_id: '00000000-0000-4000-8000-000000000007',
      path: 'portcullis/decision',
      result: { allow: false, status: 401, reasons: ['no token'] },
      timestamp: '1970-01-01T00:00:00.000Z',
      bundles: {},
    });
    expect(coded?.result).toEqual({ allow: false, status: 401, reasons: ['no token'], code: 'unauthenticated', params: {} });
  });
});
