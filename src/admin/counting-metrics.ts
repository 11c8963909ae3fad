// The request path's metrics, counted in plain numbers and handed to prom-client's registry
// when /metrics is scraped. prom-client's own inc() and observe() validate and hash their
// label object on every call (about 2 µs each; the gateway makes six per request): here a
// series is found by its label values, and a histogram observation is one bucket search.
// The exposition is prom-client's: these objects answer the registry exactly as its Counter
// and Histogram do (the tests compare the text), so names, label order and formats do not change.
import type { Metric, Registry } from 'prom-client';

interface Exposed {
  labels: Record<string, string | number>;
  sharedLabels?: Record<string, string>;
  value: number;
  metricName?: string;
}

/** What prom-client's registry reads from a metric: the same shape its Counter and Histogram give. */
abstract class CountingMetric {
  readonly aggregator = 'sum';
  abstract readonly type: 'counter' | 'histogram';

  constructor(
    readonly name: string,
    readonly help: string,
    registry: Registry,
  ) {
    // Structurally what the registry uses of a Metric: name, help, type, aggregator, get, reset.
    registry.registerMetric(this as unknown as Metric);
  }

  /** For the text format: label sets kept apart from `le`, as prom-client's Histogram keeps them. */
  getForPromString(): Promise<{ name: string; help: string; type: string; aggregator: string; values: Exposed[] }> {
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values: this.exposed() });
  }

  /** For registry.getMetricsAsJSON(): every label in `labels`. */
  async get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: Exposed[] }> {
    const metric = await this.getForPromString();
    const values = metric.values.map(({ labels, sharedLabels, ...rest }) => ({ ...rest, labels: { ...labels, ...sharedLabels } }));
    return { ...metric, values };
  }

  abstract reset(): void;

  protected abstract exposed(): Exposed[];
}

/** A counter whose label values are given positionally, in `labelNames`' order. */
export class CountingCounter<Label extends string> extends CountingMetric {
  readonly type = 'counter';
  private series = new Map<string, { labels: Record<Label, string>; value: number }>();

  constructor(options: { name: string; help: string; labelNames: readonly Label[] }, registry: Registry) {
    super(options.name, options.help, registry);
    this.labelNames = options.labelNames;
  }

  private readonly labelNames: readonly Label[];

  /** `values` in labelNames' order. */
  inc(values: readonly string[]): void {
    const key = values.join('\u0000');
    const series = this.series.get(key);
    if (series) {
      series.value += 1;
      return;
    }
    const labels = {} as Record<Label, string>;
    this.labelNames.forEach((name, i) => (labels[name] = values[i] ?? ''));
    this.series.set(key, { labels, value: 1 });
  }

  reset(): void {
    this.series = new Map();
  }

  protected exposed(): Exposed[] {
    return [...this.series.values()].map(({ labels, value }) => ({ labels: { ...labels }, value }));
  }
}

/** A histogram with one label; prom-client's bucket rules (a value lands in the first bucket it is ≤). */
export class CountingHistogram extends CountingMetric {
  readonly type = 'histogram';
  private series = new Map<string, { counts: number[]; sum: number; count: number }>();

  constructor(options: { name: string; help: string; labelName: string; buckets: readonly number[] }, registry: Registry) {
    super(options.name, options.help, registry);
    this.labelName = options.labelName;
    this.buckets = [...options.buckets].sort((a, b) => a - b);
  }

  private readonly labelName: string;
  private readonly buckets: readonly number[];

  /** A value that is not a finite number is not counted (prom-client throws; the request path must not). */
  observe(labelValue: string, value: number): void {
    if (!Number.isFinite(value)) return;
    let series = this.series.get(labelValue);
    if (!series) {
      series = { counts: new Array<number>(this.buckets.length + 1).fill(0), sum: 0, count: 0 };
      this.series.set(labelValue, series);
    }
    let bucket = 0;
    while (bucket < this.buckets.length && value > this.buckets[bucket]!) bucket += 1;
    series.counts[bucket]! += 1;
    series.sum += value;
    series.count += 1;
  }

  reset(): void {
    this.series = new Map();
  }

  protected exposed(): Exposed[] {
    const values: Exposed[] = [];
    const bucketName = `${this.name}_bucket`;
    for (const [labelValue, { counts, sum, count }] of this.series) {
      const sharedLabels = { [this.labelName]: labelValue };
      let cumulative = 0;
      this.buckets.forEach((le, i) => {
        cumulative += counts[i]!;
        values.push({ labels: { le }, sharedLabels, value: cumulative, metricName: bucketName });
      });
      values.push(
        { labels: { le: '+Inf' }, sharedLabels, value: count, metricName: bucketName },
        { labels: {}, sharedLabels, value: sum, metricName: `${this.name}_sum` },
        { labels: {}, sharedLabels, value: count, metricName: `${this.name}_count` },
      );
    }
    return values;
  }
}
