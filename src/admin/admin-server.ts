// The admin port: liveness and readiness, the public keys upstreams use to verify identity
// assertions, and the token-guarded admin API. Never exposed on the gateway port.
import { createHash, timingSafeEqual } from 'node:crypto';
import express, { type Express, type NextFunction, type Request, type Response, type Router } from 'express';
import type { Registry } from 'prom-client';
import type { PolicyEngine } from '../authz/policy-engine';
import { AuthenticationError, NotFoundError } from '../base/errors';
import { errorProblem, sendProblem } from '../http/problem';

export interface AdminDependencies {
  /** Undefined: the admin API answers 401 to everyone. */
  token: string | undefined;
  jwks: () => { keys: unknown[] };
  policy: { readonly current: PolicyEngine; readonly source: string; readonly loadedAt: Date };
  /** Resolves when PostgreSQL answers; rejects otherwise. */
  pingDatabase: () => Promise<void>;
  /** `ok` once the identity provider's signing keys are at hand, else why not. */
  signingKeys?: () => string;
  /** Prometheus registry served at /metrics (unauthenticated, like the probes: keep the admin port private). */
  metrics?: Registry;
  /** /policy, /policy/reload, /evaluate (admin/policy-routes.ts), behind the token. */
  policyApi?: Router;
  /** /decisions, /decisions/{id}, /audit (admin/decision-routes.ts), behind the token. */
  decisionApi?: Router;
  /** The operator console (admin/console/console-router.ts), with its own sign-in and sessions. */
  console?: Router;
}

export function createAdminApp(deps: AdminDependencies): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });

  app.get('/readyz', async (_req, res) => {
    const checks: Record<string, string> = { policy: deps.policy.current.revision ? 'ok' : 'not loaded' };
    if (deps.signingKeys) checks.signing_keys = deps.signingKeys();
    try {
      await deps.pingDatabase();
      checks.database = 'ok';
    } catch (error) {
      checks.database = `unreachable: ${(error as Error).message}`;
    }
    const ready = Object.values(checks).every((value) => value === 'ok');
    res.status(ready ? 200 : 503).json({ status: ready ? 'ready' : 'not ready', checks });
  });

  app.get('/metrics', async (_req, res) => {
    if (!deps.metrics) {
      res.status(404).end();
      return;
    }
    res.setHeader('content-type', deps.metrics.contentType);
    res.end(await deps.metrics.metrics());
  });

  app.get('/.well-known/jwks.json', (_req, res) => {
    res.setHeader('cache-control', 'public, max-age=300');
    res.json(deps.jwks());
  });

  const api = express.Router();
  api.use(requireAdminToken(deps.token));
  if (deps.policyApi) api.use(deps.policyApi);
  if (deps.decisionApi) api.use(deps.decisionApi);
  app.use('/admin/v1', api);
  if (deps.console) app.use('/console', deps.console);

  app.use((req: Request, res: Response) => {
    const error = new NotFoundError(`no admin endpoint ${req.method} ${req.path}`);
    sendProblem(res, errorProblem(error, { requestId: String(req.headers['x-request-id'] ?? '') }), error);
  });
  return app;
}

/** Bearer token check in constant time (hashes first, so lengths never leak either). */
export function requireAdminToken(expected: string | undefined) {
  const expectedDigest = expected ? digest(expected) : undefined;
  return (req: Request, res: Response, next: NextFunction): void => {
    const header = req.headers.authorization ?? '';
    const presented = /^Bearer ([^\s]+)$/i.exec(header)?.[1];
    if (!expectedDigest || !presented || !timingSafeEqual(digest(presented), expectedDigest)) {
      const error = new AuthenticationError(
        expectedDigest ? 'a valid admin token is required' : 'the admin API is disabled: no admin.token is configured',
      );
      sendProblem(res, errorProblem(error, { requestId: String(req.headers['x-request-id'] ?? '') }), error);
      return;
    }
    next();
  };
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}
