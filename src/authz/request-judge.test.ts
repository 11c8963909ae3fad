import type { RouteMatch } from '../routes/route';
import type { PolicyEngine, PolicyInput } from './policy-engine';
import { RequestJudge } from './request-judge';

const MATCH: RouteMatch = {
  route: '/orgs/{org}/reports/{report}',
  path: '/orgs/acme/reports/q3',
  action: 'report:read',
  service: 'reports',
  params: { org: 'acme', report: 'q3' },
  resource: { type: 'report', org: 'acme' },
  checkedByUpstream: ['report'],
};

/** A request for MATCH by `idp|1`. */
const REQUEST = { requestId: 'req-1', decisionId: 'dec-1', method: 'GET', path: MATCH.path, match: MATCH, sub: 'idp|1' };

/** A policy that allows everything. */
const ALLOW = {
  current: {
    revision: 'r1',
    evaluate: () => ({ decision: { allow: true, status: 200, reasons: [] }, revision: 'r1', latencyUs: 1 }),
  },
};

function judgeWith(evaluated: PolicyInput[]): RequestJudge {
  const engine: PolicyEngine = {
    revision: 'r1',
    evaluate: (input) => {
      evaluated.push(input);
      return { decision: { allow: true, status: 200, reasons: [] }, revision: 'r1', latencyUs: 1 };
    },
  };
  return new RequestJudge({
    subjects: { load: (sub) => Promise.resolve({ id: 'u-1', sub, email: null, memberships: {} }) },
    facts: { load: () => Promise.resolve({ organization: { exists: true } }) },
    policy: { current: engine },
  });
}

/** PostgreSQL's jsonb order: shorter keys (in UTF-8 bytes) first, then by their bytes (ASCII here). */
const inJsonbOrder = (keys: readonly string[]) => [...keys].sort((a, b) => a.length - b.length || (a < b ? -1 : a > b ? 1 : 0));

describe('RequestJudge', () => {
  it("builds the policy input with its members in jsonb key order, so the decision record's canonical JSON has none to sort", async () => {
    const evaluated: PolicyInput[] = [];
    const { input } = await judgeWith(evaluated).judge({
      requestId: 'req-1',
      decisionId: 'dec-1',
      method: 'GET',
      path: MATCH.path,
      match: MATCH,
      sub: 'idp|1',
      receivedAt: Date.UTC(2026, 10, 30, 12, 0, 0),
    });

    expect(evaluated).toEqual([input]);
    expect(Object.keys(input)).toEqual(['facts', 'action', 'request', 'subject', 'resource']);
    expect(Object.keys(input)).toEqual(inJsonbOrder(Object.keys(input)));
    expect(Object.keys(input.request)).toEqual(['id', 'path', 'time', 'route', 'method', 'time_ns', 'checked_by_upstream']);
    expect(Object.keys(input.request)).toEqual(inJsonbOrder(Object.keys(input.request)));
    expect(input.request).toEqual({
      id: 'req-1',
      path: '/orgs/acme/reports/q3',
      time: '2026-11-30T12:00:00.000Z',
      route: '/orgs/{org}/reports/{report}',
      method: 'GET',
      time_ns: Date.UTC(2026, 10, 30, 12, 0, 0) * 1_000_000,
      checked_by_upstream: ['report'],
    });
  });

  it('takes cached subject and facts as they are, and loads only what no cache holds', async () => {
    const loaded: string[] = [];
    const subject = { id: 'u-1', sub: 'idp|1', email: null, memberships: {} };
    const facts = { organization: { exists: true } };
    let cachedFacts: typeof facts | undefined = facts;
    const judge = new RequestJudge({
      subjects: {
        load: (sub) => (loaded.push(`subject ${sub}`), Promise.resolve(subject)),
        cached: () => subject,
      },
      facts: {
        load: (resource) => (loaded.push(`facts ${resource.type}`), Promise.resolve(facts)),
        cached: () => cachedFacts,
      },
      policy: ALLOW,
    });
    const request = REQUEST;

    const warm = await judge.judge(request);
    expect(loaded).toEqual([]);
    expect(warm.input.subject).toBe(subject);
    expect(warm.input.facts).toBe(facts);

    cachedFacts = undefined;
    const cold = await judge.judge(request);
    expect(loaded).toEqual(['facts report']);
    expect(cold.input.subject).toBe(subject);
  });

  it('reads subject and facts together through the directory reader when neither is cached, and through the loaders otherwise', async () => {
    const loaded: string[] = [];
    const subject = { id: 'u-1', sub: 'idp|1', email: null, memberships: {} };
    const facts = { organization: { exists: true } };
    let cachedSubject: typeof subject | undefined = undefined;
    const judge = new RequestJudge({
      subjects: { load: (sub) => (loaded.push(`subject ${sub}`), Promise.resolve(subject)), cached: () => cachedSubject },
      facts: { load: (resource) => (loaded.push(`facts ${resource.type}`), Promise.resolve(facts)), cached: () => undefined },
      directoryReader: {
        load: (sub, resource, action) => (loaded.push(`both ${sub} ${resource.type} ${action}`), Promise.resolve({ subject, facts })),
      },
      policy: ALLOW,
    });
    const request = REQUEST;

    const cold = await judge.judge(request);
    expect(loaded).toEqual(['both idp|1 report report:read']);
    expect(cold.input.subject).toBe(subject);
    expect(cold.input.facts).toBe(facts);

    loaded.length = 0;
    cachedSubject = subject;
    await judge.judge(request);
    expect(loaded).toEqual(['facts report']);
  });

  it('reads both at once through caches that take a reader: one read, each cache filled from its half', async () => {
    const reads: string[] = [];
    const subject = { id: 'u-1', sub: 'idp|1', email: null, memberships: {} };
    const facts = { organization: { exists: true } };
    const filled: unknown[] = [];
    const judge = new RequestJudge({
      subjects: {
        load: () => Promise.reject(new Error('the cache reads through the reader')),
        cached: () => undefined,
        loadThrough: async (_, read) => {
          const value = await read();
          filled.push(value);
          return value;
        },
      },
      facts: {
        load: () => Promise.reject(new Error('the cache reads through the reader')),
        cached: () => undefined,
        loadThrough: async (_, __, read) => {
          const value = await read();
          filled.push(value);
          return value;
        },
      },
      directoryReader: { load: (sub) => (reads.push(sub), Promise.resolve({ subject, facts })) },
      policy: ALLOW,
    });

    const { input } = await judge.judge(REQUEST);
    expect(reads).toEqual(['idp|1']);
    expect(filled).toEqual([subject, facts]);
    expect(input.subject).toBe(subject);
    expect(input.facts).toBe(facts);
  });

  it('leaves a cache that takes no reader to its own loader: with one such, both read on their own', async () => {
    const loaded: string[] = [];
    const subject = { id: 'u-1', sub: 'idp|1', email: null, memberships: {} };
    const facts = { organization: { exists: true } };
    const judge = new RequestJudge({
      subjects: {
        load: () => (loaded.push('subject'), Promise.resolve(subject)),
        cached: () => undefined,
        loadThrough: (_, read) => (loaded.push('subject through'), read()),
      },
      facts: { load: () => (loaded.push('facts'), Promise.resolve(facts)), cached: () => undefined },
      directoryReader: { load: () => (loaded.push('both'), Promise.resolve({ subject, facts })) },
      policy: ALLOW,
    });

    await judge.judge(REQUEST);
    expect(loaded.sort()).toEqual(['facts', 'subject']);
  });
});

describe('RequestJudge after a write the gateway forwarded', () => {
  it('reads neither cache nor directory until the caches have caught up', async () => {
    const reads: string[] = [];
    let caughtUp!: () => void;
    const catchingUp = new Promise<void>((resolve) => (caughtUp = resolve));
    const judge = new RequestJudge({
      subjects: {
        cached: (sub) => (reads.push(`cached subject ${sub}`), undefined),
        load: (sub) => (reads.push(`load subject ${sub}`), Promise.resolve({ id: 'u-1', sub, email: null, memberships: {} })),
      },
      facts: { load: () => (reads.push('load facts'), Promise.resolve({ organization: { exists: true } })) },
      policy: ALLOW,
      catchingUp: () => catchingUp,
    });
    const judged = judge.judge(REQUEST);
    await new Promise((resolve) => setImmediate(resolve));
    expect(reads).toEqual([]);
    caughtUp();
    await judged;
    expect(reads).toEqual(['cached subject idp|1', 'load subject idp|1', 'load facts']);
  });

  it('stops waiting when the request is aborted', async () => {
    const judge = new RequestJudge({
      subjects: { load: (sub) => Promise.resolve({ id: 'u-1', sub, email: null, memberships: {} }) },
      facts: { load: () => Promise.resolve({}) },
      policy: ALLOW,
      catchingUp: () => new Promise<void>(() => undefined),
    });
    const abort = new AbortController();
    const judged = judge.judge({ ...REQUEST, signal: abort.signal });
    abort.abort(new Error('the client left'));
    await expect(judged).rejects.toThrow('the client left');
  });
});
