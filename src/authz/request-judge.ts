// Judges one routed request for a known subject: loads the subject and the facts, builds the
// policy input (design §3.4) and evaluates it, beside the shadow policy when one is set. The
// gateway's pipeline and the dry runs (admin evaluate, explain) share it, so they cannot drift.
import type { FactsLoader, SubjectLoader } from '../directory/subject';
import type { RouteMatch } from '../routes/route';
import type { PolicyEngine, PolicyEvaluation, PolicyInput } from './policy-engine';
import type { ShadowComparison, ShadowPolicy } from './shadow-policy';

export interface JudgeStages {
  subjects: SubjectLoader;
  facts: FactsLoader;
  /** Read once per judgement, so a reload affects only later requests. */
  policy: { readonly current: PolicyEngine };
  shadow?: Pick<ShadowPolicy, 'compare'> | undefined;
}

export interface JudgeRequest {
  requestId: string;
  decisionId: string;
  method: string;
  /** The canonical path the route matched. */
  path: string;
  match: RouteMatch;
  /** The token's `sub`. */
  sub: string;
  /** A dry run is compared with the shadow policy but never counted as traffic. */
  dryRun?: boolean;
}

export interface Judged {
  input: PolicyInput;
  evaluation: PolicyEvaluation;
  shadow?: ShadowComparison;
  /** Time spent loading the subject and the facts (the evaluation reports its own latency). */
  directorySeconds: number;
}

export class RequestJudge {
  constructor(private readonly stages: JudgeStages) {}

  async judge(request: JudgeRequest): Promise<Judged> {
    const { match } = request;
    const started = performance.now();
    const [subject, facts] = await Promise.all([this.stages.subjects.load(request.sub), this.stages.facts.load(match.resource, match.action)]);
    const directorySeconds = (performance.now() - started) / 1000;
    const input: PolicyInput = {
      request: { id: request.requestId, method: request.method, path: request.path, route: match.route },
      action: match.action,
      resource: match.resource,
      subject,
      facts,
    };
    const evaluation = this.stages.policy.current.evaluate(input);
    if (!this.stages.shadow) return { input, evaluation, directorySeconds };
    const shadow = this.stages.shadow.compare(
      input,
      evaluation,
      request.dryRun
        ? undefined
        : {
            decisionId: request.decisionId,
            requestId: request.requestId,
            subject: request.sub,
            organization: match.resource.org ?? null,
            action: match.action,
            method: request.method,
            path: request.path,
          },
    );
    return { input, evaluation, shadow, directorySeconds };
  }
}
