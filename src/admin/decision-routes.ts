// The decision log on the admin API (behind the admin token): filtered, newest-first pages
// with a cursor, one full record (masked input and result), and the audit backlog. Every
// parameter is checked before PostgreSQL sees it: a bad one is a 400 naming it, never a 503.
import { Router, type NextFunction, type Request, type Response } from 'express';
import { z } from 'zod';
import type { AuditBacklog } from '../audit/audit-trail';
import { openDecisionQuery } from '../audit/store/decision-cursor';
import { filterTextSchema, parseInput } from '../audit/store/decision-filter';
import type { DecisionSummary, PgDecisionQueryStore } from '../audit/store/pg-decision-query-store';
import { MAX_PAGE } from '../audit/store/pg-decision-query-store';
import { DependencyError, InputError, NotFoundError } from '../base/errors';
import { errorProblem, sendProblem } from '../http/problem';

export interface DecisionRouteDependencies {
  decisions: Pick<PgDecisionQueryStore, 'list' | 'get'>;
  backlog: () => AuditBacklog;
}

interface DecisionPage {
  decisions: DecisionSummary[];
  /** Pass back as `cursor` for the next (older) page; null on the last page. */
  next_cursor: string | null;
}

const LIMIT = `must be a whole number from 1 to ${MAX_PAGE}`;

const listQuerySchema = filterTextSchema.extend({
  limit: z
    .string()
    .regex(/^\d{1,4}$/, LIMIT)
    .transform(Number)
    .refine((limit) => limit >= 1 && limit <= MAX_PAGE, LIMIT)
    .default(50),
  cursor: z.string().optional(),
});

const PARAMETERS = Object.keys(listQuerySchema.shape);

export function decisionRoutes(deps: DecisionRouteDependencies): Router {
  const router = Router();

  router.get('/decisions', async (req, res) => {
    try {
      const { limit, cursor, ...text } = parseListQuery(new URL(req.originalUrl, 'http://admin').searchParams);
      const query = openDecisionQuery(text, cursor);
      const rows = await read(() => deps.decisions.list(query.filter, { limit, beforeSeq: query.beforeSeq }));
      const last = rows.decisions[rows.decisions.length - 1];
      const page: DecisionPage = { decisions: rows.decisions, next_cursor: rows.more && last ? query.cursorAfter(last.seq) : null };
      res.json(page);
    } catch (error) {
      fail(req, res, error);
    }
  });

  router.get('/decisions/:id', async (req, res) => {
    try {
      const decision = await read(() => deps.decisions.get(String(req.params.id)));
      if (!decision) throw new NotFoundError(`no decision ${req.params.id}`);
      res.json(decision);
    } catch (error) {
      fail(req, res, error);
    }
  });

  router.get('/audit', (_req, res) => {
    res.json(deps.backlog());
  });

  // Express's own errors (a path parameter that is not valid percent-encoding) answer like ours.
  router.use((error: unknown, req: Request, res: Response, _next: NextFunction) => {
    const status = (error as { status?: unknown }).status;
    fail(req, res, status === 400 ? new InputError('the path is not valid percent-encoded UTF-8', 400, { cause: error }) : error);
  });

  return router;
}

/** The list's query string: the filters, `limit` and `cursor`; anything else is refused. */
function parseListQuery(params: URLSearchParams): z.output<typeof listQuerySchema> {
  for (const name of new Set(params.keys())) {
    if (!PARAMETERS.includes(name))
      throw new InputError(`unknown parameter ${JSON.stringify(name)}; the parameters are ${PARAMETERS.join(', ')}`);
    if (params.getAll(name).length > 1) throw new InputError(`parameter "${name}" is given more than once`);
  }
  return parseInput(listQuerySchema, Object.fromEntries(params));
}

/** A read of the decision log: whatever it throws is PostgreSQL being unavailable. */
async function read<T>(query: () => Promise<T>): Promise<T> {
  try {
    return await query();
  } catch (error) {
    throw new DependencyError('the decision log could not be read from PostgreSQL', { cause: error });
  }
}

/** Our errors keep their status; anything else is an opaque 500 (errorProblem's rule). */
function fail(req: Request, res: Response, error: unknown): void {
  sendProblem(res, errorProblem(error, { requestId: String(req.headers['x-request-id'] ?? '') }), error);
}
