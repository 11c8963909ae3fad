// Prometheus metrics (prom-client) for operators: requests by route, action, outcome and
// status; latency per pipeline stage; cache hit rates, audit backlog and policy revision,
// read from their owners when /metrics is scraped (nothing extra on the request path). The
// request path's own series are counted by ./counting-metrics, exposed through prom-client.
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { CountingCounter, CountingHistogram } from './counting-metrics';
import type { PipelineObserver, RequestSummary, Stage } from '../http/pipeline-observer';

export interface CacheStatsSource {
  cacheStats(): { hits: number; misses: number; size: number };
}

export interface MetricSources {
  caches?: Record<string, CacheStatsSource>;
  auditBacklog?: () => number;
  policyRevision?: () => string;
  /** Requests whose policy evaluation ran in the policy thread and inline (`policy.evaluation`). */
  policyPlacement?: () => { thread: number; inline: number };
}

const LATENCY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export class GatewayMetrics implements PipelineObserver {
  readonly registry = new Registry();
  private readonly requests: CountingCounter<'route' | 'action' | 'outcome' | 'status'>;
  private readonly requestSeconds: CountingHistogram;
  private readonly stageSeconds: CountingHistogram;

  constructor(sources: MetricSources = {}) {
    collectDefaultMetrics({ register: this.registry, prefix: 'portcullis_process_' });
    this.requests = new CountingCounter(
      {
        name: 'portcullis_requests_total',
        help: 'Requests by matched route, action, outcome (allowed, denied, failed, rejected, cancelled) and HTTP status (499: the connection closed before any response)',
        labelNames: ['route', 'action', 'outcome', 'status'],
      },
      this.registry,
    );
    this.requestSeconds = new CountingHistogram(
      {
        name: 'portcullis_request_duration_seconds',
        help: 'Time from receiving a request to finishing its response',
        labelName: 'outcome',
        buckets: LATENCY_BUCKETS,
      },
      this.registry,
    );
    this.stageSeconds = new CountingHistogram(
      {
        name: 'portcullis_stage_duration_seconds',
        help: 'Time spent per pipeline stage (authentication, directory, policy, upstream)',
        labelName: 'stage',
        buckets: LATENCY_BUCKETS,
      },
      this.registry,
    );
    const caches = Object.entries(sources.caches ?? {});
    for (const [name, read] of [
      ['hits', (stats: { hits: number }) => stats.hits],
      ['misses', (stats: { misses: number }) => stats.misses],
      ['entries', (stats: { size: number }) => stats.size],
    ] as const) {
      new Gauge({
        name: `portcullis_cache_${name}`,
        help: `Cache ${name} by cache`,
        labelNames: ['cache'],
        registers: [this.registry],
        collect() {
          for (const [cache, source] of caches) this.set({ cache }, read(source.cacheStats()));
        },
      });
    }
    const { auditBacklog, policyRevision, policyPlacement } = sources;
    new Counter({
      name: 'portcullis_policy_evaluations_total',
      help: 'Policy evaluations of requests by where they ran: in the policy thread or inline, on the event loop (policy.evaluation; auto moves between them with the load)',
      labelNames: ['placement'],
      registers: [this.registry],
      // Its owner keeps the totals: each scrape sets the counter to them.
      collect() {
        if (!policyPlacement) return;
        this.reset();
        const placed = policyPlacement();
        for (const placement of ['thread', 'inline'] as const) this.inc({ placement }, placed[placement]);
      },
    });
    new Gauge({
      name: 'portcullis_audit_backlog',
      help: 'Decision records not yet durable in PostgreSQL',
      registers: [this.registry],
      collect() {
        if (auditBacklog) this.set(auditBacklog());
      },
    });
    new Gauge({
      name: 'portcullis_policy_info',
      help: 'The policy revision that is serving (value is always 1)',
      labelNames: ['revision'],
      registers: [this.registry],
      collect() {
        this.reset();
        if (policyRevision) this.set({ revision: policyRevision() }, 1);
      },
    });
  }

  stage(stage: Stage, seconds: number): void {
    this.stageSeconds.observe(stage, seconds);
  }

  request(summary: RequestSummary): void {
    this.requests.inc([summary.route, summary.action, summary.outcome, String(summary.status)]);
    this.requestSeconds.observe(summary.outcome, summary.seconds);
  }
}
