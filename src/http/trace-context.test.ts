import crypto from 'node:crypto';
import { traceparentFor } from './trace-context';

describe('traceparentFor', () => {
  it('keeps a valid incoming traceparent and reports its trace id', () => {
    const incoming = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    expect(traceparentFor(incoming)).toEqual({ traceparent: incoming, traceId: '4bf92f3577b34da6a3ce929d0e0e4736' });
  });

  it.each([
    ['missing', undefined],
    ['malformed', 'not-a-trace'],
    ['an all-zero trace id', '00-00000000000000000000000000000000-00f067aa0ba902b7-01'],
    ['an all-zero parent id', '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01'],
    ['the forbidden version ff', 'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'],
    ['repeated', ['00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', 'x']],
  ])('starts a new trace when the incoming one is %s', (_name, incoming) => {
    const { traceparent, traceId } = traceparentFor(incoming);
    expect(traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    expect(traceparent.split('-')[1]).toBe(traceId);
    expect(traceId).not.toBe('4bf92f3577b34da6a3ce929d0e0e4736');
  });

  it('draws new ids from a pooled random buffer: one CSPRNG call per 256 traces, no id used twice', () => {
    const fill = jest.spyOn(crypto, 'randomFillSync');
    const bytes = jest.spyOn(crypto, 'randomBytes');
    try {
      const traces = Array.from({ length: 1_000 }, () => traceparentFor(undefined).traceparent.split('-'));
      expect(fill.mock.calls.length).toBeGreaterThanOrEqual(Math.floor(1_000 / 256));
      expect(fill.mock.calls.length).toBeLessThanOrEqual(Math.ceil(1_000 / 256) + 1);
      expect(bytes).not.toHaveBeenCalled();
      expect(new Set(traces.map((parts) => parts[1])).size).toBe(1_000);
      expect(new Set(traces.map((parts) => parts[2])).size).toBe(1_000);
      for (const parts of traces) expect(parts.join('-')).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    } finally {
      fill.mockRestore();
      bytes.mockRestore();
    }
  });
});
