// The decision log on the admin API (behind the admin token): filtered, newest-first pages
// with a cursor, one full record (masked input and result), and the audit backlog.
import { Router, type Request, type Response } from 'express';
import type { AuditBacklog } from '../audit/audit-trail';
import type { DecisionFilter, PgDecisionQueryStore } from '../audit/pg-decision-query-store';
import { MAX_PAGE } from '../audit/pg-decision-query-store';
import { parseDecisionFilter } from '../audit/decision-filter';
import { DependencyError, InputError, NotFoundError, PortcullisError } from '../http/errors';
import { errorProblem, sendProblem } from '../http/problem';

export interface DecisionRouteDependencies {
  decisions: Pick<PgDecisionQueryStore, 'list' | 'get'>;
  backlog: () => AuditBacklog;
}

const PARAMETERS = ['subject', 'org', 'action', 'allow', 'since', 'until', 'limit', 'cursor'];
const DEFAULT_LIMIT = 50;

export function decisionRoutes(deps: DecisionRouteDependencies): Router {
  const router = Router();

  router.get('/decisions', async (req, res) => {
    try {
      const params = new URL(req.originalUrl, 'http://admin').searchParams;
      const { filter, limit, cursor } = parseListQuery(params);
      res.json(await deps.decisions.list(filter, { limit, cursor }));
    } catch (error) {
      fail(req, res, error);
    }
  });

  router.get('/decisions/:id', async (req, res) => {
    try {
      const decision = await deps.decisions.get(String(req.params.id));
      if (!decision) throw new NotFoundError(`no decision ${req.params.id}`);
      res.json(decision);
    } catch (error) {
      fail(req, res, error);
    }
  });

  router.get('/audit', (_req, res) => {
    res.json(deps.backlog());
  });

  return router;
}

/** The list's query string: the filters, `limit` and `cursor`; anything else is refused. */
function parseListQuery(params: URLSearchParams): { filter: DecisionFilter; limit: number; cursor: string | undefined } {
  for (const name of new Set(params.keys())) {
    if (!PARAMETERS.includes(name)) throw new InputError(`unknown parameter "${name}"; the parameters are ${PARAMETERS.join(', ')}`);
    if (params.getAll(name).length > 1) throw new InputError(`parameter "${name}" is given more than once`);
  }
  const value = (name: string) => params.get(name) ?? undefined;
  const limitText = value('limit');
  const limit = limitText === undefined ? DEFAULT_LIMIT : Number(limitText);
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE) throw new InputError(`limit: must be a whole number from 1 to ${MAX_PAGE}`);
  const filter = parseDecisionFilter({ subject: value('subject'), org: value('org'), action: value('action'), allow: value('allow'), since: value('since'), until: value('until') });
  return { filter, limit, cursor: value('cursor') };
}

function fail(req: Request, res: Response, error: unknown): void {
  // Anything but our own errors came from PostgreSQL.
  const known = error instanceof PortcullisError ? error : new DependencyError('the decision log could not be read from PostgreSQL', { cause: error });
  sendProblem(res, errorProblem(known, { requestId: String(req.headers['x-request-id'] ?? '') }), known);
}
