// Judges one routed request for a known subject: loads the subject and the facts, builds the
// policy input (design §3.4) and evaluates it, beside the shadow policy when one is set. The
// gateway's pipeline and the dry runs (admin evaluate, explain) share it, so they cannot drift.
import { directoryVersionOf } from '../directory/directory-version';
import type { DirectoryReader, Facts, FactsLoader, Subject, SubjectLoader } from '../directory/subject';
import type { RouteMatch } from '../routes/route';
import type { PolicyEngine, PolicyEvaluation, PolicyInput } from './policy-engine';
import type { ShadowComparison, ShadowPolicy } from './shadow-policy';

export interface JudgeStages {
  subjects: SubjectLoader;
  facts: FactsLoader;
  /** When set, a judgement that has neither cached reads both in one statement (through the caches, when they take a reader). */
  directoryReader?: DirectoryReader | undefined;
  /** Read once per judgement, so a reload affects only later requests. */
  policy: { readonly current: PolicyEngine };
  shadow?: Pick<ShadowPolicy, 'compare'> | undefined;
  /** Epoch ms, for requests that bring no receipt time; default Date.now. */
  now?: (() => number) | undefined;
  /** What to wait for before reading the directory (DirectoryCaches.catchingUp): undefined, nearly always. */
  catchingUp?: (() => Promise<void> | undefined) | undefined;
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
  /** When the gateway received the request (epoch ms): the policy's request.time. Default: the judge's clock now. */
  receivedAt?: number;
  /** A dry run is compared with the shadow policy but never counted as traffic. */
  dryRun?: boolean;
  /**
   * Aborted when nobody waits for the answer any more (the client left, the gateway shuts
   * down): the judgement stops waiting for the directory and rejects with the abort reason.
   * The lookups themselves end by their statement timeout; a cached one may serve others.
   */
  signal?: AbortSignal;
  /** false: evaluated inline even where a policy thread runs (`policy.evaluation: auto`, a request that came alone). */
  offThread?: boolean;
}

export interface Judged {
  input: PolicyInput;
  evaluation: PolicyEvaluation;
  shadow?: ShadowComparison;
  /** Time spent loading the subject and the facts (the evaluation reports its own latency). */
  directorySeconds: number;
  /** The newest directory_version the subject and the facts were read at (cached ones keep theirs); null when unknown. */
  directoryVersion: number | null;
}

export class RequestJudge {
  constructor(private readonly stages: JudgeStages) {}

  async judge(request: JudgeRequest): Promise<Judged> {
    const { match } = request;
    const started = performance.now();
    // A write answered before this request was read: its change reaches the caches first.
    const catchingUp = this.stages.catchingUp?.();
    if (catchingUp) await (request.signal ? unlessAborted(catchingUp, request.signal) : catchingUp);
    // Cached entries are taken as they are: waiting for two settled promises (and listening for
    // an abort meanwhile) was most of what a warm request spent here.
    let subject = this.stages.subjects.cached?.(request.sub);
    let facts = this.stages.facts.cached?.(match.resource, match.action);
    const both = subject === undefined && facts === undefined ? readBoth(this.stages, request.sub, match) : undefined;
    if (both) {
      ({ subject, facts } = await (request.signal ? unlessAborted(both, request.signal) : both));
    } else if (subject === undefined || facts === undefined) {
      const lookups = Promise.all([
        subject ?? this.stages.subjects.load(request.sub),
        facts ?? this.stages.facts.load(match.resource, match.action),
      ]);
      [subject, facts] = await (request.signal ? unlessAborted(lookups, request.signal) : lookups);
    }
    const directorySeconds = (performance.now() - started) / 1000;
    const directoryVersion = directoryVersionOf(subject, facts);
    const receivedAt = Math.floor(request.receivedAt ?? (this.stages.now ?? Date.now)());
    // Members in PostgreSQL's jsonb key order (shorter keys first), the order the decision
    // record's canonical JSON needs: its writer then has no keys to sort for every request.
    const input: PolicyInput = {
      facts,
      action: match.action,
      request: {
        id: request.requestId,
        path: request.path,
        // Part of the recorded input, so a replay or a regression test decides at the same time.
        time: new Date(receivedAt).toISOString(),
        route: match.route,
        method: request.method,
        time_ns: receivedAt * 1_000_000,
      },
      subject,
      resource: match.resource,
    };
    // The longest key, so last in that order too.
    if (match.checkedByUpstream.length > 0) input.request.checked_by_upstream = [...match.checkedByUpstream];
    const engine = this.stages.policy.current;
    const evaluation =
      engine.evaluateOffThread && request.offThread !== false ? await engine.evaluateOffThread(input) : engine.evaluate(input);
    if (!this.stages.shadow) return { input, evaluation, directorySeconds, directoryVersion };
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
    return { input, evaluation, shadow, directorySeconds, directoryVersion };
  }
}

/**
 * Neither is cached: one read of both, when the stages have a reader. Through the caches when
 * both take one (each keeps its single flight and its invalidation rules; the read starts once,
 * for whichever misses); straight from the reader when neither is a cache. Undefined otherwise:
 * the loaders read, each its own.
 */
function readBoth(stages: JudgeStages, sub: string, match: RouteMatch): Promise<{ subject: Subject; facts: Facts }> | undefined {
  const { subjects, facts, directoryReader: reader } = stages;
  if (!reader) return undefined;
  if (!subjects.loadThrough && !facts.loadThrough) return reader.load(sub, match.resource, match.action);
  if (!subjects.loadThrough || !facts.loadThrough) return undefined;
  let read: Promise<{ subject: Subject; facts: Facts }> | undefined;
  const once = () => (read ??= reader.load(sub, match.resource, match.action));
  // A cache calls its read at once when it starts a fill, and not at all when it joins one in
  // flight. The caller's subject already on its way (their other request, cold too, for another
  // resource) leaves only the facts to read: the facts loader's own statement, not both again.
  let subjectRead = false;
  const subject = subjects.loadThrough(sub, () => {
    subjectRead = true;
    return once().then((both) => both.subject);
  });
  const resourceFacts = subjectRead
    ? facts.loadThrough(match.resource, match.action, () => once().then((both) => both.facts))
    : facts.load(match.resource, match.action);
  return Promise.all([subject, resourceFacts]).then(([loaded, loadedFacts]) => ({ subject: loaded, facts: loadedFacts }));
}

/** `work`, or the signal's reason as soon as it is aborted; a later failure of `work` is then ignored. */
function unlessAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    work.catch(() => undefined);
    return Promise.reject(signal.reason as Error);
  }
  return new Promise<T>((resolve, reject) => {
    const abandon = () => reject(signal.reason as Error);
    signal.addEventListener('abort', abandon, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', abandon));
  });
}
