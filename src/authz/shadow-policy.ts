// A candidate policy (`policy.shadow.source`) judged beside the active one on every request
// and never enforced. When the two disagree (allow or status differ) the case is written to
// policy_shadow_disagreements with both decisions, off the request path; counts are kept
// here for the admin port and metrics.
import type { ShadowDisagreement, ShadowDisagreementStore } from '../audit/store/pg-shadow-disagreement-store';
import type { PolicyDecision, PolicyEvaluation, PolicyInput } from './policy-engine';
import type { PolicyManager } from './policy-manager';
import { timeOrderedId } from '../base/time-ordered-id';

export interface ShadowComparison {
  revision: string;
  decision: PolicyDecision;
  latencyUs: number;
  agrees: boolean;
}

/** The request a comparison is about; absent for a dry run, which is neither counted nor stored. */
export type ShadowContext = Pick<
  ShadowDisagreement,
  'decisionId' | 'requestId' | 'subject' | 'organization' | 'action' | 'method' | 'path'
>;

export interface ShadowStats {
  /** Requests judged by both policies since start. */
  evaluated: number;
  disagreements: number;
  /** Disagreements that could not be stored (PostgreSQL away longer than the buffer lasts). */
  unrecorded: number;
}

const FLUSH_DELAY_MS = 100;
const RETRY_DELAY_MS = 1000;
const MAX_PENDING = 10_000;

export class ShadowPolicy {
  private readonly counts: ShadowStats = { evaluated: 0, disagreements: 0, unrecorded: 0 };
  private pending: ShadowDisagreement[] = [];
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> | undefined;

  constructor(
    readonly manager: PolicyManager,
    private readonly store: ShadowDisagreementStore,
    private readonly onError: (error: Error) => void,
  ) {}

  /** One extra synchronous evaluation; never throws (the engine fails closed on its own). */
  compare(input: PolicyInput, active: PolicyEvaluation, context?: ShadowContext): ShadowComparison {
    const shadow = this.manager.current.evaluate(input);
    const agrees = shadow.decision.allow === active.decision.allow && shadow.decision.status === active.decision.status;
    if (context) {
      this.counts.evaluated += 1;
      if (!agrees) {
        this.counts.disagreements += 1;
        this.enqueue({
          id: timeOrderedId(),
          time: new Date(),
          ...context,
          active: { revision: active.revision, decision: active.decision },
          shadow: { revision: shadow.revision, decision: shadow.decision },
          input,
        });
      }
    }
    return { revision: shadow.revision, decision: shadow.decision, latencyUs: shadow.latencyUs, agrees };
  }

  stats(): ShadowStats {
    return { ...this.counts };
  }

  /** Writes every disagreement queued so far (one attempt). */
  async flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    while (this.writing) await this.writing;
    if (this.pending.length > 0) await this.write();
  }

  async close(): Promise<void> {
    this.manager.close();
    await this.flush();
  }

  private enqueue(row: ShadowDisagreement): void {
    this.pending.push(row);
    if (this.pending.length > MAX_PENDING) {
      this.pending.shift();
      this.counts.unrecorded += 1;
    }
    this.schedule(FLUSH_DELAY_MS);
  }

  private schedule(delay: number): void {
    if (this.timer || this.writing) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.write();
    }, delay);
    this.timer.unref();
  }

  private write(): Promise<void> {
    const batch = this.pending;
    this.pending = [];
    this.writing = this.store
      .insertMany(batch)
      .then(
        () => undefined,
        (error: unknown) => {
          // Put them back in front; the next attempt waits a little.
          const merged = [...batch, ...this.pending];
          const overflow = Math.max(0, merged.length - MAX_PENDING);
          this.counts.unrecorded += overflow;
          this.pending = merged.slice(overflow);
          this.onError(error instanceof Error ? error : new Error(String(error)));
          return 'retry' as const;
        },
      )
      .then((outcome) => {
        this.writing = undefined;
        if (this.pending.length > 0) this.schedule(outcome === 'retry' ? RETRY_DELAY_MS : FLUSH_DELAY_MS);
      });
    return this.writing;
  }
}
