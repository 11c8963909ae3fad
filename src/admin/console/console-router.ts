// The operator console under /console/ on the admin port: sign-in (admin token for a signed
// session cookie), the pages, the live stream and exports of the decision log, and the two
// state-changing actions (policy reload, dry-run explain), which are POSTs carrying the
// session's CSRF token. Static assets (ours and uPlot from node_modules) need no session.
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import type { AuditBacklog } from '../../audit/audit-trail';
import { regressionTests } from '../../audit/replay/decision-regression-test';
import { replayDecisions } from '../../audit/replay/decision-replay';
import type { PgDecisionQueryStore } from '../../audit/store/pg-decision-query-store';
import type { PgShadowDisagreementStore } from '../../audit/store/pg-shadow-disagreement-store';
import { parseTimeBound } from '../../audit/store/time-bound';
import type { PolicyEngine } from '../../authz/policy-engine';
import type { Explanation, PolicyExplainer } from '../../authz/policy-explainer';
import type { PolicyManager } from '../../authz/policy-manager';
import type { ShadowPolicy } from '../../authz/shadow-policy';
import { InputError, PortcullisError } from '../../base/errors';
import { spreadsheetCell } from '../../base/spreadsheet-csv';
import { projectRoot } from '../../project-root';
import { accessPage, orgActions, sourcesOf, type ConsoleRoute } from './access-page';
import { html, page, type Html, type Section } from './console-html';
import {
  csrfMatches,
  readCookie,
  securityHeaders,
  SESSION_COOKIE,
  tokenMatches,
  type ConsoleSession,
  type SessionSigner,
} from './console-session';
import type { ConsoleStore } from './console-store';
import { decisionPage, type DecisionExplained } from './decision-page';
import { pinned, queryString, readFilterValues, toFilter, type FilterValues } from './decision-query';
import { decisionRow, decisionsPage } from './decisions-page';
import { organizationPage, organizationsPage } from './directory-page';
import { explainPage } from './explain-page';
import { overviewPage } from './overview-page';
import { policyPage, type PolicyPageData, type ReplayForm } from './policy-page';

export interface ConsoleDependencies {
  /** The admin token the sign-in form must present; undefined: nobody signs in. */
  token: string | undefined;
  sessions: SessionSigner;
  store: ConsoleStore;
  decisions: Pick<PgDecisionQueryStore, 'get' | 'count' | 'replayPage'>;
  policy: Pick<PolicyManager, 'state' | 'reload' | 'current'>;
  shadow?: (Pick<ShadowPolicy, 'stats'> & { manager: Pick<PolicyManager, 'state'> }) | undefined;
  explainer: Pick<PolicyExplainer, 'explain'>;
  disagreements: Pick<PgShadowDisagreementStore, 'list'>;
  backlog: () => AuditBacklog;
  caches: Record<string, { cacheStats(): { hits: number; misses: number; size: number } }>;
  routes: readonly ConsoleRoute[];
  entrypoint: string;
  loadCandidate: (source: string) => Promise<PolicyEngine>;
  /** How often live mode looks for new records. */
  livePollMs?: number;
}

const PAGE = 50;
const EXPORT_PAGE = 1000;
const LIVE_PAGE = 200;
/** An export stops here; narrow the filters for more. */
const EXPORT_LIMIT = 100_000;
const STATIC_DIR = path.join(projectRoot, 'src', 'admin', 'console', 'static');
const UPLOT_DIR = path.dirname(require.resolve('uplot/dist/uPlot.iife.min.js'));

interface SignedIn {
  session: ConsoleSession;
}

export function createConsoleRouter(deps: ConsoleDependencies): Router {
  const router = express.Router();
  const revoked = new Map<string, number>();
  const form = express.urlencoded({ extended: false, limit: '16kb', parameterLimit: 50 });

  router.use(securityHeaders);
  router.use('/static', express.static(STATIC_DIR, { index: false, fallthrough: false }));
  router.get('/vendor/uplot.js', (_req, res) => res.sendFile(path.join(UPLOT_DIR, 'uPlot.iife.min.js')));
  router.get('/vendor/uplot.css', (_req, res) => res.sendFile(path.join(UPLOT_DIR, 'uPlot.min.css')));

  router.get('/sign-in', (req, res) => {
    const pre = randomToken();
    res.setHeader(
      'set-cookie',
      `${PRE_COOKIE}=${pre}; Path=/console; HttpOnly; SameSite=Strict; Max-Age=600${req.secure ? '; Secure' : ''}`,
    );
    res.type('html').send(signInPage(pre, localNext(req.query.next), typeof req.query.error === 'string', deps.sessions.ttlMs));
  });

  router.post('/sign-in', form, (req, res) => {
    const body = req.body as Record<string, unknown>;
    const pre = readCookie(req, PRE_COOKIE);
    const next = localNext(body.next);
    if (!pre || body.csrf !== pre) {
      res
        .status(403)
        .type('html')
        .send(
          page(
            { title: 'Sign-in refused' },
            html`<p role="alert">The sign-in form expired or came from another site. <a href="/console/sign-in">Sign in again</a>.</p>`,
          ),
        );
      return;
    }
    if (!tokenMatches(typeof body.token === 'string' ? body.token : '', deps.token)) {
      res.redirect(303, `/console/sign-in?error=1&next=${encodeURIComponent(next)}`);
      return;
    }
    const { cookie } = deps.sessions.issue();
    res.setHeader('set-cookie', [
      `${SESSION_COOKIE}=${cookie}; ${deps.sessions.cookieAttributes(req, deps.sessions.ttlMs)}`,
      `${PRE_COOKIE}=; Path=/console; Max-Age=0`,
    ]);
    res.redirect(303, next);
  });

  // Everything below needs a session; a POST also needs its CSRF token.
  router.use((req: Request, res: Response, next: NextFunction) => {
    const session = deps.sessions.verify(readCookie(req, SESSION_COOKIE));
    if (!session || revoked.has(session.id)) {
      if (req.method === 'GET' || req.method === 'HEAD') res.redirect(303, `/console/sign-in?next=${encodeURIComponent(req.originalUrl)}`);
      else
        res
          .status(401)
          .type('html')
          .send(page({ title: 'Signed out' }, html`<p role="alert">Your session has ended. <a href="/console/sign-in">Sign in</a>.</p>`));
      return;
    }
    (res.locals as SignedIn).session = session;
    next();
  });
  router.post(/.*/, form, (req: Request, res: Response, next: NextFunction) => {
    if (!csrfMatches(sessionOf(res), (req.body as Record<string, unknown> | undefined)?.csrf)) {
      res
        .status(403)
        .type('html')
        .send(
          page(
            { title: 'Request refused' },
            html`<p role="alert">This form is missing its CSRF token or it belongs to another session. Reload the page and try again.</p>`,
          ),
        );
      return;
    }
    next();
  });

  router.post('/sign-out', (req, res) => {
    const session = sessionOf(res);
    const now = Date.now();
    for (const [id, expiresAt] of revoked) if (expiresAt <= now) revoked.delete(id);
    revoked.set(session.id, session.expiresAt);
    res.setHeader('set-cookie', `${SESSION_COOKIE}=; ${deps.sessions.cookieAttributes(req, 0)}`);
    res.redirect(303, '/console/sign-in');
  });

  const send = (
    res: Response,
    title: string,
    section: Section | undefined,
    body: Html,
    options: { status?: number; scripts?: string[]; styles?: string[] } = {},
  ) => {
    res
      .status(options.status ?? 200)
      .type('html')
      .send(page({ title, section, csrf: sessionOf(res).csrf, scripts: options.scripts ?? [], styles: options.styles ?? [] }, body));
  };

  router.get('/', async (_req, res, next) => {
    try {
      const now = new Date();
      const hour = 3_600_000;
      const day = 24 * hour;
      const [hourly, daily, reloads, latency, tops, chain] = await Promise.all([
        deps.store.counts('hour', new Date(now.getTime() - 7 * day + hour), now),
        deps.store.counts('day', new Date(now.getTime() - 29 * day), now),
        deps.store.revisionsSeen(new Date(now.getTime() - 30 * day)),
        deps.store.latency(new Date(now.getTime() - day)),
        deps.store.deniedTops(new Date(now.getTime() - day)),
        deps.store.chain(),
      ]);
      const caches = Object.fromEntries(Object.entries(deps.caches).map(([name, cache]) => [name, cache.cacheStats()]));
      const body = overviewPage({
        hourly,
        daily,
        reloads,
        latency,
        tops,
        policy: deps.policy.state(),
        backlog: deps.backlog(),
        chain,
        caches,
      });
      send(res, 'Overview', 'overview', body, {
        scripts: ['/console/vendor/uplot.js', '/console/static/overview.js'],
        styles: ['/console/vendor/uplot.css'],
      });
    } catch (error) {
      next(error);
    }
  });

  router.get('/decisions', async (req, res, next) => {
    let values: FilterValues = {};
    try {
      const read = readFilterValues(req.query);
      values = read.values;
      const filter = toFilter(values);
      const rows = await deps.store.decisions(filter, { limit: PAGE, beforeSeq: read.beforeSeq });
      const last = rows.decisions[rows.decisions.length - 1];
      const older = rows.more && last ? `/console/decisions${queryString(pinned(values, filter), { before: last.seq })}` : undefined;
      send(res, 'Decisions', 'decisions', decisionsPage(values, rows.decisions, older, undefined), {
        scripts: ['/console/static/decisions.js'],
      });
    } catch (error) {
      if (error instanceof InputError)
        send(res, 'Decisions', 'decisions', decisionsPage(values, [], undefined, error.message), { status: 400 });
      else next(error);
    }
  });

  router.get('/decisions/live', async (req, res, next) => {
    let filter;
    try {
      filter = toFilter(readFilterValues(req.query).values);
    } catch (error) {
      next(error);
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
    // Several instances commit out of seq order: the stream reads only as far as every record is final.
    const horizon = deps.store.horizon();
    let after = await horizon.start().catch(() => 0);
    res.write(`: live from seq ${after}\n\n`);
    let busy = false;
    const timer = setInterval(() => {
      if (busy) return;
      busy = true;
      horizon
        .advance()
        .then(async (through) => {
          const rows = await deps.store.decisionsAfter({ ...filter, since: undefined }, after, through, LIVE_PAGE);
          for (const row of rows) {
            after = row.seq;
            res.write(`id: ${row.seq}\nevent: decision\ndata: ${JSON.stringify({ seq: row.seq, html: decisionRow(row).text })}\n\n`);
          }
          if (rows.length < LIVE_PAGE) after = Math.max(after, through);
          if (rows.length === 0) res.write(': idle\n\n');
        })
        .catch(() => res.write('event: problem\ndata: "the decision log could not be read"\n\n'))
        .finally(() => (busy = false));
    }, deps.livePollMs ?? 1000);
    req.on('close', () => clearInterval(timer));
  });

  router.get(/^\/decisions\/export\.(csv|ndjson)$/, async (req, res, next) => {
    try {
      const format = (req.params as Record<string, string>)[0] === 'csv' ? 'csv' : 'ndjson';
      const filter = toFilter(readFilterValues(req.query).values);
      res.setHeader('content-type', format === 'csv' ? 'text/csv; charset=utf-8' : 'application/x-ndjson');
      res.setHeader('content-disposition', `attachment; filename="decisions.${format}"`);
      if (format === 'csv') res.write(`${CSV_COLUMNS.join(',')}\n`);
      let before: number | undefined;
      for (let written = 0; written < EXPORT_LIMIT;) {
        const rows = await deps.store.decisions(filter, { limit: EXPORT_PAGE, beforeSeq: before });
        for (const row of rows.decisions) {
          res.write(
            format === 'csv' ? `${CSV_COLUMNS.map((column) => spreadsheetCell(row[column])).join(',')}\n` : `${JSON.stringify(row)}\n`,
          );
        }
        written += rows.decisions.length;
        if (!rows.more || rows.decisions.length === 0) break;
        before = rows.decisions[rows.decisions.length - 1]!.seq;
      }
      res.end();
    } catch (error) {
      if (res.headersSent) res.destroy(error as Error);
      else next(error);
    }
  });

  const showDecision = async (req: Request, res: Response, explained?: DecisionExplained): Promise<void> => {
    const decision = await deps.decisions.get(String(req.params.id));
    if (!decision) {
      send(res, 'No such decision', 'decisions', html`<p role="alert">No decision ${String(req.params.id)} is stored.</p>`, {
        status: 404,
      });
      return;
    }
    const regression = decision.input === null ? null : regressionTests([decision], deps.entrypoint);
    send(res, `Decision ${decision.id.slice(0, 8)}`, 'decisions', decisionPage(decision, regression, sessionOf(res).csrf, explained));
  };

  router.get('/decisions/:id', async (req, res, next) => {
    try {
      await showDecision(req, res);
    } catch (error) {
      next(error);
    }
  });

  router.post('/decisions/:id/explain', async (req, res, next) => {
    try {
      const decision = await deps.decisions.get(String(req.params.id));
      if (!decision) {
        await showDecision(req, res);
        return;
      }
      const engine = deps.policy.current;
      const rerun =
        decision.input === null
          ? null
          : (() => {
              const evaluation = engine.evaluate(decision.input as Parameters<PolicyEngine['evaluate']>[0]);
              const { decision: now } = evaluation;
              return {
                revision: evaluation.revision,
                decision: now,
                differs: now.allow !== decision.allow || (!now.allow && now.status !== decision.status),
              };
            })();
      let explanation: Explanation | null = null;
      let error: string | undefined;
      if (decision.subject) {
        try {
          explanation = await deps.explainer.explain({ subject: decision.subject, method: decision.method, path: decision.path });
        } catch (thrown) {
          error = thrown instanceof PortcullisError ? thrown.message : 'the explanation failed';
        }
      }
      await showDecision(req, res, { rerun, explanation, error });
    } catch (error) {
      next(error);
    }
  });

  router.get('/explain', async (req, res, next) => {
    const text = (name: string) => (typeof req.query[name] === 'string' ? req.query[name].trim() : '');
    const query = { subject: text('subject'), method: text('method') || 'GET', path: text('path') };
    let explanation: Explanation | undefined;
    let grantedBy: string[] = [];
    let error: string | undefined;
    try {
      if (query.subject && query.path) {
        const subject = query.subject.includes('@') ? ((await deps.store.subjectByEmail(query.subject)) ?? query.subject) : query.subject;
        explanation = await deps.explainer.explain({ ...query, subject });
        const org = explanation.resource?.org;
        if (explanation.result.allow && org && explanation.action) {
          const member = (await deps.store.members(org)).find((candidate) => candidate.subject === explanation!.subject.sub);
          grantedBy = member ? sourcesOf(member, explanation.action) : [];
        }
      }
    } catch (thrown) {
      if (!(thrown instanceof PortcullisError)) {
        next(thrown);
        return;
      }
      error = thrown.message;
    }
    send(
      res,
      'Explain a request',
      'explain',
      explainPage(query, explanation, grantedBy, error, `${req.protocol}://${req.get('host') ?? 'localhost'}`),
      { status: error ? 400 : 200 },
    );
  });

  router.get('/access', async (req, res, next) => {
    try {
      const orgs = (await deps.store.organizations()).map((org) => org.slug);
      const text = (name: string) => (typeof req.query[name] === 'string' && req.query[name] !== '' ? req.query[name] : undefined);
      const org = text('org') ?? orgs[0];
      if (!org) {
        send(res, 'Access map', 'access', html`<p>There are no organizations yet.</p>`);
        return;
      }
      const details = await deps.store.organization(org);
      if (!details) {
        send(res, 'Access map', 'access', html`<p role="alert">There is no organization ${org}.</p>`, { status: 404 });
        return;
      }
      const sample = {
        project: details.projects[0]?.slug ?? 'project',
        user: details.members[0]?.userId ?? 'user',
        team: details.teams[0]?.name ?? 'team',
      };
      const body = accessPage(
        { org, action: text('action'), user: text('user') },
        orgs,
        details.members,
        orgActions(deps.routes),
        deps.routes,
        sample,
      );
      send(res, `Access map: ${org}`, 'access', body);
    } catch (error) {
      next(error);
    }
  });

  const policyData = async (before: string | undefined): Promise<PolicyPageData> => {
    const page = (await deps.disagreements.list({ limit: PAGE, before })) ?? { disagreements: [], more: false };
    const last = page.disagreements[page.disagreements.length - 1];
    return {
      state: deps.policy.state(),
      shadow: deps.shadow ? { state: deps.shadow.manager.state(), stats: deps.shadow.stats() } : undefined,
      disagreements: {
        rows: page.disagreements,
        next: page.more && last ? `/console/policy${queryString({}, { before: last.id })}` : undefined,
      },
    };
  };

  router.get('/policy', async (req, res, next) => {
    try {
      const before = typeof req.query.before === 'string' ? req.query.before : undefined;
      send(res, 'Policy', 'policy', policyPage(await policyData(before), sessionOf(res).csrf));
    } catch (error) {
      next(error);
    }
  });

  router.post('/policy/reload', async (_req, res, next) => {
    try {
      const outcome = await deps.policy.reload();
      const reload =
        outcome.status === 'failed'
          ? {
              ok: false,
              message: `The policy was not reloaded: ${outcome.error.file ? `${outcome.error.file}${outcome.error.line ? `:${outcome.error.line}` : ''}: ` : ''}${outcome.error.message}. Revision ${outcome.revision} keeps serving.`,
            }
          : {
              ok: true,
              message:
                outcome.status === 'loaded'
                  ? `Reloaded: revision ${outcome.revision} now serves.`
                  : `Unchanged: revision ${outcome.revision} keeps serving.`,
            };
      send(res, 'Policy', 'policy', policyPage({ ...(await policyData(undefined)), reload }, sessionOf(res).csrf), {
        status: reload.ok ? 200 : 422,
      });
    } catch (error) {
      next(error);
    }
  });

  router.post('/policy/replay', async (req, res, next) => {
    const body = req.body as Record<string, unknown>;
    const field = (name: string) => (typeof body[name] === 'string' ? body[name].trim() : '');
    const replayForm: ReplayForm = { candidate: field('candidate'), since: field('since') || '24h', until: field('until') };
    try {
      let replay: PolicyPageData['replay'];
      try {
        const now = new Date();
        const filter = {
          since: parseTimeBound(replayForm.since, 'since', now),
          until: replayForm.until ? parseTimeBound(replayForm.until, 'until', now) : undefined,
          dryRun: false,
        };
        const candidate = await deps.loadCandidate(replayForm.candidate);
        replay = { form: replayForm, report: await replayDecisions(deps.decisions, candidate, { filter }) };
      } catch (error) {
        if (!(error instanceof InputError)) throw error;
        replay = { form: replayForm, error: error.message };
      }
      send(res, 'Policy', 'policy', policyPage({ ...(await policyData(undefined)), replay }, sessionOf(res).csrf), {
        status: replay.error ? 400 : 200,
      });
    } catch (error) {
      next(error);
    }
  });

  router.get('/directory', async (_req, res, next) => {
    try {
      send(res, 'Directory', 'directory', organizationsPage(await deps.store.organizations()));
    } catch (error) {
      next(error);
    }
  });

  router.get('/directory/:org', async (req, res, next) => {
    try {
      const org = await deps.store.organization(String(req.params.org));
      if (!org)
        send(res, 'Directory', 'directory', html`<p role="alert">There is no organization ${String(req.params.org)}.</p>`, { status: 404 });
      else send(res, `Organization ${org.slug}`, 'directory', organizationPage(org));
    } catch (error) {
      next(error);
    }
  });

  router.use((req: Request, res: Response) => {
    send(res, 'Not found', undefined, html`<p role="alert">The console has no page ${req.path}.</p>`, { status: 404 });
  });

  router.use((error: unknown, _req: Request, res: Response, _next: NextFunction) => {
    const known = error instanceof PortcullisError;
    const status = known ? ((error as { status?: number }).status ?? 500) : 500;
    const message = known
      ? (error as Error).message
      : 'The page could not be built (the database may be unavailable); see the gateway log.';
    if (res.headersSent) {
      res.end();
      return;
    }
    if (res.locals && (res.locals as Partial<SignedIn>).session)
      send(res, 'Error', undefined, html`<p class="error" role="alert">${message}</p>`, { status });
    else res.status(status).type('text/plain').send(message);
  });

  return router;
}

const PRE_COOKIE = 'portcullis_console_signin';

const CSV_COLUMNS = [
  'id',
  'seq',
  'time',
  'request_id',
  'subject',
  'user_id',
  'organization',
  'action',
  'method',
  'path',
  'allow',
  'status',
  'reasons',
  'policy_revision',
  'eval_latency_us',
  'dry_run',
] as const;

function sessionOf(res: Response): ConsoleSession {
  return (res.locals as SignedIn).session;
}

function randomToken(): string {
  return randomBytes(24).toString('base64url');
}

/** Where to go after signing in: a console path only (never another origin). */
function localNext(value: unknown): string {
  return typeof value === 'string' && /^\/console(\/[^\\]*)?$/.test(value) && !value.startsWith('//') ? value : '/console/';
}

function signInPage(csrf: string, next: string, failed: boolean, ttlMs: number): string {
  return page(
    { title: 'Sign in' },
    html`${failed ? html`<p class="error" role="alert">That is not the admin token.</p>` : ''}
      <form method="post" action="/console/sign-in" class="sign-in">
        <input type="hidden" name="csrf" value="${csrf}" /><input type="hidden" name="next" value="${next}" />
        <div class="field">
          <label for="token">Admin token</label
          ><input id="token" name="token" type="password" autocomplete="current-password" required autofocus />
        </div>
        <button type="submit">Sign in</button>
        <p>
          The token is <code>admin.token</code> of the gateway's configuration. A session lasts ${Math.round(ttlMs / 60_000)} minutes, or
          until you sign out.
        </p>
      </form>`,
  );
}
