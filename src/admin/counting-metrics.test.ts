import { Counter, Histogram, Registry } from 'prom-client';
import { CountingCounter, CountingHistogram } from './counting-metrics';

const BUCKETS = [0.001, 0.01, 0.1, 1];

/** The same observations in prom-client's own metrics and in ours, each in its own registry. */
function both() {
  const theirs = new Registry();
  const ours = new Registry();
  const counterOptions = { name: 'requests_total', help: 'Requests', labelNames: ['route', 'outcome', 'status'] as const };
  const histogramOptions = { name: 'stage_seconds', help: 'Stage time', buckets: BUCKETS };
  return {
    theirs,
    ours,
    counters: [
      new Counter({ ...counterOptions, labelNames: [...counterOptions.labelNames], registers: [theirs] }),
      new CountingCounter(counterOptions, ours),
    ] as const,
    histograms: [
      new Histogram({ ...histogramOptions, labelNames: ['stage'], registers: [theirs] }),
      new CountingHistogram({ ...histogramOptions, labelName: 'stage' }, ours),
    ] as const,
  };
}

describe('counting metrics', () => {
  it('expose exactly what prom-client exposes for the same observations, in text and JSON', async () => {
    const { theirs, ours, counters, histograms } = both();
    const requests: [string, string, string][] = [
      ['/orgs/{org}', 'allowed', '200'],
      ['/orgs/{org}', 'allowed', '200'],
      ['/orgs/{org}', 'denied', '403'],
      ['unmatched', 'rejected', '404'],
      ['/a "quoted"\\route\n', 'failed', '500'],
    ];
    for (const [route, outcome, status] of requests) {
      counters[0].inc({ route, outcome, status });
      counters[1].inc([route, outcome, status]);
    }
    // On a boundary, between boundaries, below the first, above the last.
    const observations: [string, number][] = [
      ['policy', 0.001],
      ['policy', 0.0005],
      ['policy', 0.05],
      ['directory', 2.5],
      ['directory', 0.01],
      ['upstream', 0],
    ];
    for (const [stage, seconds] of observations) {
      histograms[0].observe({ stage }, seconds);
      histograms[1].observe(stage, seconds);
    }

    const text = await ours.metrics();
    expect(text).toBe(await theirs.metrics());
    expect(text).toContain('stage_seconds_bucket{le="0.01",stage="policy"} 2');
    expect(text).toContain('requests_total{route="/orgs/{org}",outcome="allowed",status="200"} 2');
    // Exemplars (OpenMetrics, off here) are prom-client's own: null per bucket.
    const withoutExemplars = (await theirs.getMetricsAsJSON()).map((metric) => ({
      ...metric,
      values: metric.values.map((value) => {
        const { exemplar: _, ...rest } = value as typeof value & { exemplar?: unknown };
        return rest;
      }),
    }));
    expect(await ours.getMetricsAsJSON()).toEqual(withoutExemplars);
  });

  it('skip a value that is not a finite number instead of throwing on the request path', async () => {
    const { ours, histograms } = both();
    histograms[1].observe('policy', Number.NaN);
    histograms[1].observe('policy', Number.POSITIVE_INFINITY);
    histograms[1].observe('policy', 0.2);
    expect(await ours.metrics()).toContain('stage_seconds_count{stage="policy"} 1');
  });

  it('start again from zero on reset, as prom-client metrics do', async () => {
    const { ours, counters, histograms } = both();
    counters[1].inc(['/', 'allowed', '200']);
    histograms[1].observe('policy', 0.2);
    ours.resetMetrics();
    const text = await ours.metrics();
    expect(text).not.toMatch(/requests_total\{/);
    expect(text).not.toMatch(/stage_seconds_count\{/);
  });
});
