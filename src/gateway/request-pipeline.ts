// The request's path through the gateway (design §2): canonicalize, match, authenticate,
// load subject and facts, evaluate, record, then forward or deny. Each stage is injected
// through its small interface; this class only sequences them and fails closed.
import { setMaxListeners } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { DecisionRecord, DecisionRecorder } from '../audit/decision-record';
import type { Authenticator, Principal } from '../authn/authenticator';
import type { EvaluationPlacement } from '../authz/evaluation-placement';
import type { PolicyEngine, PolicyEvaluation, PolicyInput } from '../authz/policy-engine';
import { RequestJudge } from '../authz/request-judge';
import type { ShadowPolicy } from '../authz/shadow-policy';
import type { DirectoryReader, FactsLoader, SubjectLoader } from '../directory/subject';
import type { Forwarder } from '../proxy/forwarder';
import type { AssertionClaims } from '../proxy/identity-assertion';
import type { RouteMatch, RouteMatcher } from '../routes/route';
import { SlotSet } from '../base/churn-free';
import { DependencyError, InputError, NotFoundError, PortcullisError, UpstreamError } from '../base/errors';
import { timeOrderedId } from '../base/time-ordered-id';
import { inspectRequest, withoutHopByHop } from '../http/inspect-request';
import { canonicalizeTarget } from '../http/normalize-path';
import type { Outcome, PipelineObserver } from '../http/pipeline-observer';
import { denialProblem, errorProblem, sendProblem } from '../http/problem';
import { traceparentFor } from '../http/trace-context';

export interface AssertionSigner {
  assertionFor(claims: AssertionClaims): Promise<string>;
}

export interface PipelineStages {
  routes: RouteMatcher;
  authenticator: Authenticator;
  subjects: SubjectLoader;
  facts: FactsLoader;
  /** Subject and facts in one statement when neither is cached. */
  directoryReader?: DirectoryReader | undefined;
  /** Read on every request, so a reload swaps the policy for the next request only. */
  policy: { readonly current: PolicyEngine };
  /** A candidate policy judged beside the active one and never enforced. */
  shadow?: Pick<ShadowPolicy, 'compare'> | undefined;
  recorder: DecisionRecorder;
  /** audit.mode strict: an allowed request is forwarded only once its decision record is durable. */
  strictAudit?: boolean;
  assertions: AssertionSigner;
  forwarder: Forwarder;
  logger: Logger;
  observer: PipelineObserver;
  bodyLimitBytes: number;
  /** Where each request's policy evaluation runs (`policy.evaluation`); default: in the policy thread when there is one. */
  placement?: Pick<EvaluationPlacement, 'arrive'> | undefined;
  /** Epoch ms: when a request was received, the policy's request.time; default Date.now. */
  now?: (() => number) | undefined;
  /**
   * Called when a forwarded request that may write (any method but GET, HEAD and OPTIONS) has
   * been answered below 400, before the gateway reads another request: the directory caches
   * catch up there with every change committed so far, and the requests read meanwhile wait for
   * them (`catchingUp`), so a client that saw its write answered is judged on it next (read your
   * writes, through one gateway).
   */
  afterWrite?: (() => void) | undefined;
  /** What a request read after such a write waits for before it reads the directory; undefined nearly always. */
  catchingUp?: (() => Promise<void> | undefined) | undefined;
}

export const HEADER = {
  user: 'x-portcullis-user',
  org: 'x-portcullis-org',
  decision: 'x-portcullis-decision',
  assertion: 'x-portcullis-assertion',
  requestId: 'x-request-id',
} as const;

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
/** Methods that write nothing: RFC 9110's safe methods but TRACE (a route that forwards TRACE makes the caches catch up too). */
const READ_ONLY_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** A `Connection` header listing `close` among its tokens. */
const CONNECTION_CLOSE = /(^|,)\s*close\s*(,|$)/i;

/** Recorded (never sent) when the connection closed before any response: nginx's "client closed request". */
export const CLIENT_CLOSED_STATUS = 499;

/** The abort reason when the connection closes before the response was complete. */
class ConnectionClosed extends Error {
  constructor() {
    super('the client connection closed before the response was complete');
    this.name = 'ConnectionClosed';
  }
}

const CONNECTION_ABORT = Symbol('portcullis.connectionAbort');
type TrackedSocket = Socket & { [CONNECTION_ABORT]?: AbortController };

/**
 * The abort controller of a client connection, aborted when it closes. Requests share their
 * connection's (a response cut short means the connection is gone, for every request on it):
 * an AbortSignal costs about 2.7 µs to create, too much to pay on every keep-alive request.
 */
function connectionAbort(socket: TrackedSocket): AbortController {
  let abort = socket[CONNECTION_ABORT];
  if (!abort) {
    const controller = new AbortController();
    // Each pipelined request in flight on the connection listens while it waits for the directory.
    setMaxListeners(0, controller.signal);
    socket[CONNECTION_ABORT] = abort = controller;
    socket.once('close', () => controller.signal.aborted || controller.abort(new ConnectionClosed()));
  }
  return abort;
}

/**
 * Where a request stands, one state instead of a flag per event: `deciding` (authentication,
 * directory, policy), then `allowed` (handed to the upstream), `denied` or `failed` (answered
 * with a problem), or `cancelled` (its connection closed before the response was complete; a
 * decision reached later is neither sent nor recorded again). The request's metrics outcome is
 * its state, `failed` while still deciding.
 */
type JudgementState = 'deciding' | Exclude<Outcome, 'rejected'>;

/**
 * Everything known about one request past routing; it shapes the decision record. A class with
 * every field set in the constructor, so all requests share one object shape.
 */
class Judgement {
  state: JudgementState = 'deciding';
  /** Each request is recorded once: set by record(), cleared only when a strict record is withdrawn. */
  recorded = false;
  /** cancelInFlight() stopped it: recorded as `shutting_down`, not as a client gone or a dependency down. */
  shutDown = false;
  /** performance.now() when the request was handed to the upstream. */
  forwardedAt: number | undefined = undefined;
  /** When the allow was forwarded: the time its record carries, though written at the response's end. */
  decidedAt: Date | undefined = undefined;
  principal: Principal | undefined = undefined;
  input: PolicyInput | undefined = undefined;
  evaluation: PolicyEvaluation | undefined = undefined;
  /** The directory state the subject and facts were read at. */
  directoryVersion: number | null = null;
  /** Its place in the pipeline's requests in flight (a SlotSet), -1 when not there. */
  slot = -1;

  constructor(
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly requestId: string,
    readonly decisionId: string,
    readonly traceId: string,
    readonly match: RouteMatch,
    /** The canonical path, spelled as the route spells its literals: the one path judged and forwarded. */
    readonly path: string,
    readonly query: string,
    /** performance.now() when the request arrived, for its duration. */
    readonly startedAt: number,
    /** Epoch ms when the request arrived: the policy input's request.time. */
    readonly receivedAt: number,
    /** Its connection's: aborted when the connection closes or the gateway shuts down; lookups stop, nothing more is forwarded. */
    readonly abort: AbortController,
  ) {}
}

export class RequestPipeline {
  private readonly judge: RequestJudge;
  /**
   * Requests past routing whose response has not ended: what a shutdown drains, then cuts. Not a
   * Set, whose churn under load promotes every request's objects (churn-free.ts).
   */
  private readonly inFlight = new SlotSet<Judgement>();
  private idleWaiters: Array<() => void> = [];
  /** Set by stop(): the stages are shutting down, so new requests are refused. */
  private stopped = false;
  private readonly now: () => number;

  constructor(private readonly stages: PipelineStages) {
    this.judge = new RequestJudge(stages);
    this.now = stages.now ?? Date.now;
  }

  /** The only request handler of the gateway port. Never throws, never forwards on error. */
  readonly handle = (req: IncomingMessage, res: ServerResponse): void => {
    const clientId = req.headers[HEADER.requestId];
    const requestId = typeof clientId === 'string' && REQUEST_ID.test(clientId) ? clientId : timeOrderedId();
    res.setHeader(HEADER.requestId, requestId);
    const { traceparent, traceId } = traceparentFor(req.headers.traceparent);
    req.headers.traceparent = traceparent;
    const startedAt = performance.now();
    if (this.stopped) {
      // Mounted in an app that still takes requests: nothing behind the pipeline is left to answer them.
      res.setHeader('connection', 'close');
      sendProblem(res, errorProblem(new DependencyError('the gateway is shutting down'), { requestId }));
      return;
    }

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
      this.stages.logger.info({ requestId, traceId, method: req.method, err: error }, 'request refused before routing');
      sendProblem(res, errorProblem(error, { requestId }), error);
      this.stages.observer.request({
        route: 'unmatched',
        action: '',
        outcome: 'rejected',
        status: res.statusCode,
        seconds: (performance.now() - startedAt) / 1000,
      });
      return;
    }

    const judgement = new Judgement(
      req,
      res,
      requestId,
      timeOrderedId(),
      traceId,
      match,
      match.path,
      query,
      startedAt,
      this.now(),
      connectionAbort(req.socket),
    );
    res.setHeader(HEADER.decision, judgement.decisionId);
    this.inFlight.add(judgement);
    res.on('close', () => this.closed(judgement));
    this.decide(judgement).then(
      (allowed) => (allowed ? this.forward(judgement) : this.deny(judgement)),
      (error: unknown) => this.fail(judgement, error),
    );
  };

  /** From now on every new request is answered 503 (a shutdown where no server stops accepting them). */
  stop(): void {
    this.stopped = true;
  }

  /** Resolves once no request is in flight. */
  whenIdle(): Promise<void> {
    if (this.inFlight.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Shutdown, after the drain period: a request still waiting for its decision stops waiting
   * and is answered 503 (and recorded so); a response still being forwarded is cut, which
   * aborts its upstream request. Each is recorded with what its client got.
   */
  cancelInFlight(reason: string): void {
    for (const judgement of this.inFlight) {
      judgement.shutDown = true;
      judgement.abort.abort(new DependencyError(reason));
      if (judgement.forwardedAt !== undefined) judgement.res.destroy();
    }
  }

  /** Runs authentication, directory and policy; true only for an explicit allow. */
  private async decide(judgement: Judgement): Promise<boolean> {
    const { req, match } = judgement;
    const { observer } = this.stages;
    const { signal } = judgement.abort;
    const at = performance.now();
    const principal = await this.stages.authenticator.authenticate(req.headers.authorization);
    judgement.principal = principal;
    observer.stage('authentication', (performance.now() - at) / 1000);
    signal.throwIfAborted();
    const judged = await this.judge.judge({
      requestId: judgement.requestId,
      decisionId: judgement.decisionId,
      method: req.method ?? '',
      path: judgement.path,
      match,
      sub: principal.sub,
      receivedAt: judgement.receivedAt,
      signal,
      // Placed once the caller is known: a request refused before the policy is not counted.
      offThread: this.stages.placement?.arrive(this.inFlight.size) ?? true,
    });
    observer.stage('directory', judged.directorySeconds);
    judgement.input = judged.input;
    judgement.evaluation = judged.evaluation;
    judgement.directoryVersion = judged.directoryVersion;
    observer.stage('policy', judged.evaluation.latencyUs / 1e6);
    return judged.evaluation.decision.allow === true;
  }

  /** The response ended, or its connection closed first (then whatever still runs for it is aborted). */
  private closed(judgement: Judgement): void {
    const { res } = judgement;
    this.inFlight.delete(judgement);
    const status = sentStatus(res);
    if (res.writableFinished) {
      // audit.mode async: a forwarded request is recorded now, with the status the client got
      // (strict mode recorded it before forwarding, and a denial was recorded before its answer).
      if (judgement.state === 'allowed') {
        this.record(judgement, status, []);
        // 'close' comes in a process.nextTick after the answer was written: before any next request is read.
        if (status < 400 && !READ_ONLY_METHODS.has(judgement.req.method ?? '')) this.stages.afterWrite?.();
      }
    } else {
      // Recorded now, with what the client got, whatever stage is still running: a decision
      // reached later is neither sent nor recorded again, and an allow is not forwarded.
      judgement.state = 'cancelled';
      if (!judgement.abort.signal.aborted) judgement.abort.abort(new ConnectionClosed());
      const reason = abortReason(judgement);
      if (!judgement.recorded)
        this.stages.logger.info(
          { requestId: judgement.requestId, decisionId: judgement.decisionId, traceId: judgement.traceId, status },
          reason,
        );
      this.record(judgement, status, [reason], goneCode(judgement));
    }
    const now = performance.now();
    const { observer } = this.stages;
    if (judgement.forwardedAt !== undefined) observer.stage('upstream', (now - judgement.forwardedAt) / 1000);
    const { match, state } = judgement;
    observer.request({
      route: match.route,
      action: match.action,
      outcome: state === 'deciding' ? 'failed' : state,
      status,
      seconds: (now - judgement.startedAt) / 1000,
    });
    if (this.inFlight.size === 0 && this.idleWaiters.length > 0) {
      for (const resolve of this.idleWaiters.splice(0)) resolve();
    }
  }

  private forward(judgement: Judgement): void {
    const { req, res, match, input, principal } = judgement;
    const org = match.resource.org ?? null;
    const userId = input?.subject.id ?? null;
    this.stages.assertions
      .assertionFor({
        userId,
        sub: principal?.sub ?? '',
        org,
        service: match.service,
        email: principal?.email,
        emailVerified: principal?.emailVerified,
        name: principal?.name,
      })
      .then(async (assertion) => {
        const { signal } = judgement.abort;
        const strict = this.stages.strictAudit === true;
        signal.throwIfAborted();
        if (strict) await this.recordDurably(judgement, 200, []);
        // The connection may have closed meanwhile (a pipelined request's connection dying on a
        // later parse error, a shutdown): then nothing is forwarded for a client that is gone.
        signal.throwIfAborted();
        const clientCloses = CONNECTION_CLOSE.test(String(req.headers.connection ?? ''));
        const headers = withoutHopByHop(req.headers);
        req.headers = headers;
        // http-proxy answers the client with this value; the upstream hop always keeps alive.
        headers.connection = clientCloses ? 'close' : 'keep-alive';
        if (userId) headers[HEADER.user] = userId;
        if (org) headers[HEADER.org] = org;
        headers[HEADER.decision] = judgement.decisionId;
        headers[HEADER.assertion] = assertion;
        headers[HEADER.requestId] = judgement.requestId;
        // The upstream sees exactly the path the policy judged (design §3.5).
        req.url = judgement.path + judgement.query;
        // Async mode records what the client got when the response ends (closed()).
        judgement.state = 'allowed';
        judgement.forwardedAt = performance.now();
        judgement.decidedAt = new Date();
        this.stages.forwarder.forward(match.service, req, res);
      })
      .catch((error: unknown) => this.fail(judgement, error));
  }

  private deny(judgement: Judgement): void {
    if (judgement.state === 'cancelled') return;
    const decision = judgement.evaluation!.decision;
    const problem = denialProblem(decision, judgement);
    judgement.state = 'denied';
    this.stages.logger.info(
      {
        requestId: judgement.requestId,
        decisionId: judgement.decisionId,
        traceId: judgement.traceId,
        action: judgement.match.action,
        status: problem.status,
        code: decision.code,
        reasons: decision.reasons,
      },
      'request denied',
    );
    this.answerOnceRecorded(judgement, problem.status, decision.reasons, undefined, () => sendProblem(judgement.res, problem));
  }

  /** Any failure before forwarding is a recorded deny (fail closed, R8). */
  private fail(judgement: Judgement, error: unknown): void {
    if (judgement.state === 'cancelled') {
      // Recorded when the connection closed, unless a strict allow record held that back and then failed.
      this.record(judgement, CLIENT_CLOSED_STATUS, [abortReason(judgement)], goneCode(judgement));
      return;
    }
    const code = failureCode(judgement, error);
    const problem = errorProblem(error, { requestId: judgement.requestId, decisionId: judgement.decisionId, code });
    judgement.state = problem.status === 401 ? 'denied' : 'failed';
    // A 401 is routine (the client's token, not the gateway, is at fault): its reason, no stack trace.
    const cause = problem.status === 401 ? { reason: problem.detail } : { err: error };
    const context = { requestId: judgement.requestId, decisionId: judgement.decisionId, traceId: judgement.traceId, ...cause };
    if (problem.status >= 500) this.stages.logger.error(context, 'request failed closed');
    else this.stages.logger.info(context, 'request denied');
    this.answerOnceRecorded(judgement, problem.status, [problem.detail], code, () => sendProblem(judgement.res, problem, error));
  }

  /**
   * audit.mode strict: a denial or failure is answered only once its record is durable, so a
   * gateway killed right after answering never leaves a client holding a decision id with no
   * record. A record that can be neither written nor spooled does not turn a denial into
   * anything else: the client is still denied, and the record waits in memory like any
   * async one, to be written once PostgreSQL takes records again.
   */
  private answerOnceRecorded(
    judgement: Judgement,
    status: number,
    reasons: readonly string[],
    code: string | undefined,
    answer: () => void,
  ): void {
    if (this.stages.strictAudit !== true) {
      this.record(judgement, status, reasons, code);
      answer();
      return;
    }
    this.recordDurably(judgement, status, reasons, code).then(answer, (error: unknown) => {
      this.stages.logger.error(
        { requestId: judgement.requestId, decisionId: judgement.decisionId, err: error },
        'a denial could not be recorded durably; answered, and its record kept in memory',
      );
      this.record(judgement, status, reasons, code);
      answer();
    });
  }

  /** Forwarding failures after an allow: the decision is recorded when the response ends, only answer. */
  readonly upstreamFailed = (error: UpstreamError | InputError, req: IncomingMessage, res: ServerResponse): void => {
    const requestId = String(req.headers[HEADER.requestId] ?? '');
    const decisionId = String(req.headers[HEADER.decision] ?? '');
    this.stages.logger.warn({ requestId, decisionId, err: error }, 'upstream failed');
    sendProblem(res, errorProblem(error, { requestId, decisionId }), error);
  };

  /** Queues the request's decision record, unless it has one already. */
  private record(judgement: Judgement, status: number, reasons: readonly string[], code?: string): void {
    const record = this.decisionRecord(judgement, status, reasons, code);
    if (record) this.stages.recorder.record(record);
  }

  /**
   * audit.mode strict: settles once the record is durable (at once if the request has one
   * already), and rejects (503) if it cannot be; the request is then unrecorded again, so that
   * its refusal can be recorded instead.
   */
  private recordDurably(judgement: Judgement, status: number, reasons: readonly string[], code?: string): Promise<void> {
    const record = this.decisionRecord(judgement, status, reasons, code);
    if (!record) return Promise.resolve();
    return this.stages.recorder.recordDurably(record).catch((cause: unknown) => {
      judgement.recorded = false;
      throw new DependencyError('the decision could not be recorded durably (audit.mode: strict), so the request was not forwarded', {
        cause,
      });
    });
  }

  /**
   * The request's one decision record, built once from the judgement (undefined when it was
   * recorded already). `code`: the gateway's own, for an outcome the policy did not decide; a
   * policy denial and an allow keep the policy's code.
   */
  private decisionRecord(
    judgement: Judgement,
    status: number,
    reasons: readonly string[],
    code: string | undefined,
  ): DecisionRecord | undefined {
    if (judgement.recorded) return undefined;
    judgement.recorded = true;
    const { req, match, input, evaluation, principal } = judgement;
    const decision = evaluation?.decision;
    // An allowed request that reached the upstream stays an allow whatever the upstream answered.
    const allow = decision?.allow === true && (judgement.forwardedAt !== undefined || status < 400);
    const policyCoded = allow || code === undefined;
    return {
      id: judgement.decisionId,
      time: judgement.decidedAt ?? new Date(),
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
      reasons: decision && allow ? joined(decision.reasons, reasons) : [...reasons],
      code: policyCoded ? (decision?.code ?? null) : code,
      codeParams: policyCoded ? (decision?.params ?? null) : {},
      policyRevision: evaluation?.revision ?? null,
      evalLatencyUs: evaluation?.latencyUs ?? null,
      input: input ?? null,
      dryRun: false,
      directoryVersion: judgement.directoryVersion,
      clientAddress: req.socket.remoteAddress ?? null,
    };
  }
}

/** A record's own copy of the policy's reasons and the gateway's, without copying twice when one list is empty. */
function joined(first: readonly string[], second: readonly string[]): string[] {
  if (second.length === 0) return first.slice();
  if (first.length === 0) return second.slice();
  return [...first, ...second];
}

/** The status the client received, or CLIENT_CLOSED_STATUS when no response head was sent. */
function sentStatus(res: ServerResponse): number {
  return res.headersSent ? res.statusCode : CLIENT_CLOSED_STATUS;
}

/** A connection closed before its answer: by the client, or cut by a shutdown. */
function goneCode(judgement: Judgement): string {
  return judgement.shutDown ? 'shutting_down' : 'client_gone';
}

/** The code of a failure before forwarding: the error's kind (`unauthenticated`, `dependency_unavailable`). */
function failureCode(judgement: Judgement, error: unknown): string {
  if (judgement.shutDown) return 'shutting_down';
  return error instanceof PortcullisError ? error.code.replaceAll('-', '_') : 'internal_error';
}

function abortReason(judgement: Judgement): string {
  const reason: unknown = judgement.abort.signal.reason;
  return reason instanceof Error ? reason.message : new ConnectionClosed().message;
}
