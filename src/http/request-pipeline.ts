// The request's path through the gateway (design §2): canonicalize, match, authenticate,
// load subject and facts, evaluate, record, then forward or deny. Each stage is injected
// through its small interface; this class only sequences them and fails closed.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { DecisionRecord, DecisionRecorder } from '../audit/decision-record';
import type { Authenticator, Principal } from '../authn/authenticator';
import type { PolicyEngine, PolicyEvaluation, PolicyInput } from '../authz/policy-engine';
import type { FactsLoader, SubjectLoader } from '../directory/subject';
import type { Forwarder } from '../proxy/forwarder';
import type { RouteMatch, RouteMatcher } from '../routes/route';
import { InputError, NotFoundError, UpstreamError } from './errors';
import { inspectRequest, stripHopByHop } from './inspect-request';
import { canonicalizeTarget } from './normalize-path';
import { denialProblem, errorProblem, sendProblem } from './problem';

export interface AssertionSigner {
  assertionFor(claims: { userId: string | null; sub: string; org: string | null; service: string }): Promise<string>;
}

export interface PipelineStages {
  routes: RouteMatcher;
  authenticator: Authenticator;
  subjects: SubjectLoader;
  facts: FactsLoader;
  /** Read on every request, so a reload swaps the policy for the next request only. */
  policy: { readonly current: PolicyEngine };
  recorder: DecisionRecorder;
  assertions: AssertionSigner;
  forwarder: Forwarder;
  logger: Logger;
  bodyLimitBytes: number;
}

export const HEADER = {
  user: 'x-portcullis-user',
  org: 'x-portcullis-org',
  decision: 'x-portcullis-decision',
  assertion: 'x-portcullis-assertion',
  requestId: 'x-request-id',
} as const;

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** What is known about a request when it is denied or fails; shapes the decision record. */
interface Judgement {
  requestId: string;
  decisionId: string;
  match: RouteMatch;
  path: string;
  principal?: Principal;
  input?: PolicyInput;
  evaluation?: PolicyEvaluation;
}

export class RequestPipeline {
  constructor(private readonly stages: PipelineStages) {}

  /** The only request handler of the gateway port. Never throws, never forwards on error. */
  readonly handle = (req: IncomingMessage, res: ServerResponse): void => {
    const clientId = req.headers[HEADER.requestId];
    const requestId = typeof clientId === 'string' && REQUEST_ID.test(clientId) ? clientId : randomUUID();
    res.setHeader(HEADER.requestId, requestId);

    let match: RouteMatch | undefined;
    let path: string;
    let query: string;
    try {
      inspectRequest({ method: req.method ?? '', url: req.url ?? '', rawHeaders: req.rawHeaders, httpVersion: req.httpVersion });
      ({ path, query } = canonicalizeTarget(req.url ?? ''));
      const length = Number(req.headers['content-length'] ?? 0);
      if (length > this.stages.bodyLimitBytes) throw new InputError(`the request body exceeds ${this.stages.bodyLimitBytes} bytes`, 413);
      match = this.stages.routes.match(req.method ?? '', path);
      if (!match) throw new NotFoundError(`no route matches ${req.method} ${path}`);
    } catch (error) {
      // Malformed or unmatched (R8): nothing after route matching runs, nothing is recorded.
      if (error instanceof InputError) res.setHeader('connection', 'close');
      this.stages.logger.info({ requestId, method: req.method, err: error }, 'request refused before routing');
      sendProblem(res, errorProblem(error, { requestId }), error);
      return;
    }

    const judgement: Judgement = { requestId, decisionId: randomUUID(), match, path };
    res.setHeader(HEADER.decision, judgement.decisionId);
    this.decide(req, judgement).then(
      (allowed) => {
        if (allowed) this.forward(req, res, judgement, query);
        else this.deny(req, res, judgement);
      },
      (error: unknown) => this.fail(req, res, judgement, error),
    );
  };

  /** Runs authentication, directory and policy; true only for an explicit allow. */
  private async decide(req: IncomingMessage, judgement: Judgement): Promise<boolean> {
    const { match } = judgement;
    judgement.principal = await this.stages.authenticator.authenticate(req.headers.authorization);
    const [subject, facts] = await Promise.all([
      this.stages.subjects.load(judgement.principal.sub),
      this.stages.facts.load(match.resource, match.action),
    ]);
    judgement.input = {
      request: { id: judgement.requestId, method: req.method ?? '', path: judgement.path, route: match.route },
      action: match.action,
      resource: match.resource,
      subject,
      facts,
    };
    judgement.evaluation = this.stages.policy.current.evaluate(judgement.input);
    return judgement.evaluation.decision.allow === true;
  }

  private forward(req: IncomingMessage, res: ServerResponse, judgement: Judgement, query: string): void {
    const { match, input, principal } = judgement;
    const org = match.resource.org ?? null;
    const userId = input?.subject.id ?? null;
    this.stages.assertions
      .assertionFor({ userId, sub: principal?.sub ?? '', org, service: match.service })
      .then((assertion) => {
        this.record(req, judgement, 200, []);
        const headers = req.headers;
        const clientCloses = /(^|,)\s*close\s*(,|$)/i.test(String(headers.connection ?? ''));
        stripHopByHop(headers);
        // http-proxy answers the client with this value; the upstream hop always keeps alive.
        headers.connection = clientCloses ? 'close' : 'keep-alive';
        if (userId) headers[HEADER.user] = userId;
        if (org) headers[HEADER.org] = org;
        headers[HEADER.decision] = judgement.decisionId;
        headers[HEADER.assertion] = assertion;
        headers[HEADER.requestId] = judgement.requestId;
        // The upstream sees exactly the path the policy judged (design §3.5).
        req.url = judgement.path + query;
        this.stages.forwarder.forward(match.service, req, res);
      })
      .catch((error: unknown) => this.fail(req, res, judgement, error));
  }

  private deny(req: IncomingMessage, res: ServerResponse, judgement: Judgement): void {
    const decision = judgement.evaluation!.decision;
    const problem = denialProblem(decision.status, decision.reasons, judgement);
    this.record(req, judgement, problem.status, decision.reasons);
    sendProblem(res, problem);
  }

  /** Any failure before forwarding is a recorded deny (fail closed, R8). */
  private fail(req: IncomingMessage, res: ServerResponse, judgement: Judgement, error: unknown): void {
    const problem = errorProblem(error, judgement);
    if (problem.status >= 500) this.stages.logger.error({ requestId: judgement.requestId, decisionId: judgement.decisionId, err: error }, 'request failed closed');
    this.record(req, judgement, problem.status, [problem.detail]);
    sendProblem(res, problem, error);
  }

  /** Upstream failures after an allow: the decision is already recorded, only answer. */
  readonly upstreamFailed = (error: UpstreamError, req: IncomingMessage, res: ServerResponse): void => {
    const requestId = String(req.headers[HEADER.requestId] ?? '');
    const decisionId = String(req.headers[HEADER.decision] ?? '');
    this.stages.logger.warn({ requestId, decisionId, err: error }, 'upstream failed');
    sendProblem(res, errorProblem(error, { requestId, decisionId }), error);
  };

  private record(req: IncomingMessage, judgement: Judgement, status: number, reasons: readonly string[]): void {
    const { match, input, evaluation, principal } = judgement;
    const allow = evaluation?.decision.allow === true && status < 400;
    const record: DecisionRecord = {
      id: judgement.decisionId,
      time: new Date(),
      requestId: judgement.requestId,
      subject: principal?.sub ?? null,
      userId: input?.subject.id ?? null,
      organization: match.resource.org ?? null,
      action: match.action,
      resource: match.resource,
      method: req.method ?? '',
      path: judgement.path,
      allow,
      status,
      reasons: allow ? (evaluation?.decision.reasons ?? []) : [...reasons],
      policyRevision: evaluation?.revision ?? null,
      evalLatencyUs: evaluation?.latencyUs ?? null,
      input: input ?? null,
    };
    this.stages.recorder.record(record);
  }
}
