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
});
