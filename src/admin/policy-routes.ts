// The policy part of the admin API (mounted behind the admin token): what policy serves and
// its last load error, a reload on demand, dry-run evaluation for policy authors, and the
// shadow policy's recorded disagreements, newest first, a page at a time.
import express, { type Request, type Response, type Router } from 'express';
import { z } from 'zod';
import { parseInput } from '../audit/store/decision-filter';
import { MAX_DISAGREEMENT_PAGE, type PgShadowDisagreementStore } from '../audit/store/pg-shadow-disagreement-store';
import type { ExplainQuery, PolicyExplainer } from '../authz/policy-explainer';
import type { PolicyManager, PolicyState } from '../authz/policy-manager';
import type { ShadowPolicy } from '../authz/shadow-policy';
import { InputError, PolicyRejectedError } from '../base/errors';
import { errorProblem, sendProblem } from '../http/problem';

export interface PolicyRouteDependencies {
  policy: Pick<PolicyManager, 'state' | 'reload'>;
  shadow?: (Pick<ShadowPolicy, 'stats'> & { manager: Pick<PolicyManager, 'state'> }) | undefined;
  explainer: Pick<PolicyExplainer, 'explain'>;
  disagreements: Pick<PgShadowDisagreementStore, 'list'>;
}

const LIMIT = `must be a whole number from 1 to ${MAX_DISAGREEMENT_PAGE}`;

const disagreementQuerySchema = z.strictObject({
  limit: z
    .string()
    .regex(/^\d{1,4}$/, LIMIT)
    .transform(Number)
    .refine((limit) => limit >= 1 && limit <= MAX_DISAGREEMENT_PAGE, LIMIT)
    .default(50),
  cursor: z.string().optional(),
});

export function createPolicyRouter(deps: PolicyRouteDependencies): Router {
  const router = express.Router();

  router.get('/policy', (_req, res) => {
    res.json({
      ...stateJson(deps.policy.state()),
      shadow: deps.shadow ? { ...stateJson(deps.shadow.manager.state()), ...statsJson(deps.shadow.stats()) } : null,
    });
  });

  router.post('/policy/reload', async (req, res) => {
    const outcome = await deps.policy.reload();
    if (outcome.status === 'failed') {
      const error = new PolicyRejectedError(
        `the policy was not reloaded: ${outcome.error.message}; revision ${outcome.revision} keeps serving`,
      );
      const problem = errorProblem(error, { requestId: requestIdOf(req) });
      res
        .status(422)
        .type('application/problem+json')
        .json({ ...problem, revision: outcome.revision, error: failureJson(outcome.error) });
      return;
    }
    res.json({ status: outcome.status, revision: outcome.revision, policy: stateJson(deps.policy.state()) });
  });

  router.get('/policy/shadow/disagreements', async (req, res) => {
    try {
      const { limit, cursor } = parseDisagreementQuery(new URL(req.originalUrl, 'http://admin').searchParams);
      const page = await deps.disagreements.list({ limit, before: cursor });
      if (!page) throw new InputError('cursor: is not a next_cursor this endpoint gave');
      const last = page.disagreements[page.disagreements.length - 1];
      res.json({ disagreements: page.disagreements, next_cursor: page.more && last ? last.id : null });
    } catch (error) {
      sendProblem(res, errorProblem(error, { requestId: requestIdOf(req) }), error);
    }
  });

  router.post('/evaluate', express.json({ limit: '16kb' }), async (req, res) => {
    try {
      res.json(await deps.explainer.explain(parseQuery(req.body)));
    } catch (error) {
      sendProblem(res, errorProblem(error, { requestId: requestIdOf(req) }), error);
    }
  });

  // Malformed JSON bodies (express.json) become problems like everything else.
  router.use((error: unknown, req: Request, res: Response, _next: express.NextFunction) => {
    const type = (error as { type?: string }).type;
    const problemError =
      type === 'entity.too.large'
        ? new InputError('the request body is too large', 413)
        : type?.startsWith('entity.')
          ? new InputError(`the request body is not acceptable JSON: ${(error as Error).message}`)
          : error;
    sendProblem(res, errorProblem(problemError, { requestId: requestIdOf(req) }), problemError);
  });
  return router;
}

function parseQuery(body: unknown): ExplainQuery {
  const { subject, method, path, time } = (body ?? {}) as Record<string, unknown>;
  if (
    typeof subject !== 'string' ||
    typeof method !== 'string' ||
    typeof path !== 'string' ||
    (time !== undefined && typeof time !== 'string')
  ) {
    throw new InputError(
      'the body must be {"subject": "<JWT sub or user id>", "method": "GET", "path": "/orgs/acme"}, optionally with "time": "<RFC 3339>"',
    );
  }
  return time === undefined ? { subject, method, path } : { subject, method, path, time };
}

/** `limit` and `cursor`, each at most once; anything else is refused. */
function parseDisagreementQuery(params: URLSearchParams): z.output<typeof disagreementQuerySchema> {
  const names = Object.keys(disagreementQuerySchema.shape);
  for (const name of new Set(params.keys())) {
    if (!names.includes(name)) throw new InputError(`unknown parameter ${JSON.stringify(name)}; the parameters are ${names.join(', ')}`);
    if (params.getAll(name).length > 1) throw new InputError(`parameter "${name}" is given more than once`);
  }
  return parseInput(disagreementQuerySchema, Object.fromEntries(params));
}

function stateJson(state: PolicyState) {
  return {
    revision: state.revision,
    source: state.source,
    source_kind: state.kind,
    loaded_at: state.loadedAt.toISOString(),
    entrypoints: state.entrypoints,
    last_error: state.lastError ? failureJson(state.lastError) : null,
  };
}

function failureJson(failure: NonNullable<PolicyState['lastError']>) {
  return { file: failure.file ?? null, line: failure.line ?? null, message: failure.message, at: failure.at.toISOString() };
}

function statsJson(stats: ReturnType<ShadowPolicy['stats']>) {
  return { evaluated: stats.evaluated, disagreements: stats.disagreements, unrecorded: stats.unrecorded };
}

function requestIdOf(req: Request): string {
  return String(req.headers['x-request-id'] ?? '');
}
