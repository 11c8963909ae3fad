// What the pipeline reports about each request, for operators: per-stage latency and one
// outcome per request. Metrics (src/admin/metrics.ts) implement it; tests may use a fake.

export type Stage = 'authentication' | 'directory' | 'policy' | 'upstream';
/** `cancelled`: the connection closed (client gone, or cut at shutdown) before the response was complete. */
export type Outcome = 'allowed' | 'denied' | 'failed' | 'rejected' | 'cancelled';

export interface RequestSummary {
  /** The matched route pattern, or `unmatched`. */
  route: string;
  action: string;
  outcome: Outcome;
  status: number;
  seconds: number;
}

export interface PipelineObserver {
  stage(stage: Stage, seconds: number): void;
  request(summary: RequestSummary): void;
}

export const silentObserver: PipelineObserver = { stage: () => undefined, request: () => undefined };
