// The directory service's Express app: every resource module's operations behind the
// gateway's assertion, GET /openapi.json and /healthz open, and the one error handler that
// turns domain errors (and PostgreSQL's integrity errors) into problem+json.
import { randomUUID } from 'node:crypto';
import express, { type NextFunction, type Request, type Response } from 'express';
import { ConflictError, InputError, MethodNotAllowedError, NotFoundError, PortcullisError } from '../base/errors';
import { errorProblem, sendProblem } from '../http/problem';
import type { AssertionVerifier } from './assertion-verifier';
import { eventsOperations } from './events-operations';
import { IdempotencyStore } from './http-semantics';
import { invitationOperations } from './invitation-operations';
import { memberOperations } from './member-operations';
import { mountOperations, openApiDocument, type DirectoryDeps, type Operation } from './operation';
import { organizationOperations } from './organization-operations';
import { projectOperations } from './project-operations';
import { roleOperations } from './role-operations';
import { teamOperations } from './team-operations';
import { usersOperations } from './users-operations';

/** Every resource module; a new one is added here. */
const OPERATION_MODULES: ReadonlyArray<(deps: DirectoryDeps) => Operation[]> = [
  usersOperations,
  eventsOperations,
  organizationOperations,
  memberOperations,
  invitationOperations,
  teamOperations,
  roleOperations,
  projectOperations,
];

export interface DirectoryAppDeps extends DirectoryDeps {
  verifier: AssertionVerifier;
}

export function directoryOperations(deps: DirectoryDeps): Operation[] {
  return OPERATION_MODULES.flatMap((module) => module(deps));
}

export function createDirectoryApp(deps: DirectoryAppDeps): express.Express {
  const operations = directoryOperations(deps);
  const document = openApiDocument(operations, { title: 'Portcullis directory service', version: '1' });
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false); // ETags are the operations' own (strong, of the representation)
  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/openapi.json', (_req, res) => {
    res.json(document);
  });
  mountOperations(app, operations, { verifier: deps.verifier, idempotency: new IdempotencyStore(deps.db) });
  // A path the service serves, asked with another method (PUT where it updates with PATCH):
  // 405 naming the methods it takes, not a 404 that would say the resource is missing.
  for (const [path, methods] of methodsByPath(operations)) {
    const allow = methods.includes('GET') ? [...methods, 'HEAD'] : methods;
    app.all(path, (req: Request) => {
      throw new MethodNotAllowedError(`${req.path} takes ${allow.join(', ')}, not ${req.method}`, allow);
    });
  }
  app.use((req: Request) => {
    throw new NotFoundError(`no operation ${req.method} ${req.path}: see GET /openapi.json`);
  });
  app.use((error: unknown, req: Request, res: Response, _next: NextFunction) => {
    const known = toDomainError(error);
    if (!known) deps.logger.error({ err: error, method: req.method, path: req.path }, 'directory operation failed');
    const requestId = header(req, 'x-request-id') ?? randomUUID();
    const problem = errorProblem(known ?? error, { requestId, decisionId: header(req, 'x-portcullis-decision') });
    if (!known) problem.detail = 'the directory service failed to process this request; nothing was changed';
    sendProblem(res, problem, known);
  });
  return app;
}

/** Each operation path with its methods, in the order the operations are mounted. */
function methodsByPath(operations: readonly Operation[]): Map<string, string[]> {
  const paths = new Map<string, string[]>();
  for (const operation of operations) {
    const methods = paths.get(operation.path) ?? [];
    if (!methods.includes(operation.method)) methods.push(operation.method);
    paths.set(operation.path, methods);
  }
  return paths;
}

function header(req: Request, name: string): string | undefined {
  const value = req.headers[name];
  return typeof value === 'string' ? value : undefined;
}

interface BodyParserError {
  type?: string;
  status?: number;
  message?: string;
}

interface PgError {
  code?: string;
  constraint?: string;
  detail?: string;
}

/** Domain errors as they are; body parser and PostgreSQL integrity errors as the domain errors they mean. */
function toDomainError(error: unknown): PortcullisError | undefined {
  if (error instanceof PortcullisError) return error;
  const parser = error as BodyParserError;
  if (parser?.type === 'entity.too.large')
    return new InputError(`the body is larger than ${(error as { limit?: number }).limit ?? 'allowed'} bytes`, 413);
  if (parser?.type === 'entity.parse.failed') return new InputError(`the body is not valid JSON: ${parser.message ?? ''}`.trim());
  if (parser?.type === 'encoding.unsupported' || parser?.type === 'charset.unsupported')
    return new InputError(parser.message ?? 'unsupported body encoding', 415);
  const pg = error as PgError;
  switch (pg?.code) {
    case '23505': // unique_violation: a concurrent request created the same thing first
      return new ConflictError(`already exists${pg.detail ? `: ${pg.detail}` : ''}`);
    case '23001': // restrict_violation
    case '23503': // foreign_key_violation
      return new ConflictError(`still in use${pg.detail ? `: ${pg.detail}` : ''}`);
    case '23514': // check_violation
      return new InputError(`not allowed by ${pg.constraint ?? 'a check constraint'}`, 422);
    case '40001': // serialization_failure
    case '40P01': // deadlock_detected
      return new ConflictError('a concurrent change got in the way; retry');
    default:
      return undefined;
  }
}
