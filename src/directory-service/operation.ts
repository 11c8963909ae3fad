// The one route registry of the directory service: each operation is declared once, with
// zod schemas, and both the Express routes (assertion check, validation, Idempotency-Key,
// ETag, If-None-Match) and GET /openapi.json are generated from these declarations.
//
// Adding operations (a resource module `xxx-operations.ts` exports `xxxOperations(deps)`,
// and directory-app.ts lists it in OPERATION_MODULES):
//
//   export const teamOperations = (deps: DirectoryDeps): Operation[] => [
//     defineOperation({
//       method: 'PATCH', path: '/orgs/:org/teams/:team', service: 'organizations', summary: 'Rename a team',
//       params: z.object({ org: z.string(), team: z.string() }),
//       body: z.strictObject({ name: z.string().min(1).max(100) }),
//       response: teamSchema, status: 200, etag: true,
//       handler: ({ params, body, actor, headers }) => deps.db.transaction(async (trx) => {
//         const before = await new TeamStore(trx).lockByNameOrId(params.org, params.team); // select ... for update; NotFoundError
//         requireIfMatch(headers, etagOf(before));                                          // 412 when stale
//         const after = await new TeamStore(trx).rename(before.id, body.name);
//         await deps.events.append(trx, { actor, action: 'team.update', organizationId: ..., organizationSlug: params.org,
//           targetType: 'team', targetId: after.id, before, after });
//         return { body: after };                                                          // status 200, ETag of the body
//       }),
//     }),
//   ];
//
// Path parameters that fail their schema answer 404, the query 400, the body 422. Handlers
// throw the domain errors of src/base/errors.ts; directory-app.ts maps them to problem+json.
// POSTs with an `Idempotency-Key` are replayed by this layer: handlers need not care.
import type { IncomingHttpHeaders } from 'node:http';
import express, { type NextFunction, type Request, type Response } from 'express';
import type { Knex } from 'knex';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { PortcullisConfig } from '../config/config-schema';
import { ForbiddenError, InputError, NotFoundError } from '../base/errors';
import type { Actor, AssertionVerifier, DirectoryServiceName } from './assertion-verifier';
import type { DirectoryEvents } from './directory-events';
import { etagOf, notModified, type IdempotencyStore, type StoredAnswer } from './http-semantics';

/** What resource modules receive from the service. */
export interface DirectoryDeps {
  db: Knex;
  events: DirectoryEvents;
  config: PortcullisConfig['directory'];
  logger: Logger;
  /** Outgoing HTTP (the password reset webhook). */
  fetch: typeof fetch;
}

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

export interface OperationInput<P, Q, B> {
  params: P;
  query: Q;
  body: B;
  /** The bytes of a `rawBody` operation (a picture); undefined otherwise. */
  raw: Buffer | undefined;
  actor: Actor;
  headers: IncomingHttpHeaders;
}

export interface Reply {
  /** Default: the operation's `status`. */
  status?: number;
  /** JSON body; absent: no body. */
  body?: unknown;
  headers?: Record<string, string>;
  /** Bytes instead of JSON (a picture). */
  binary?: { contentType: string; data: Buffer };
}

type Schema = z.ZodType;

export interface OperationSpec<P extends Schema, Q extends Schema, B extends Schema> {
  method: HttpMethod;
  /** Express style: '/orgs/:org/teams/:team'. */
  path: string;
  /** The gateway service whose assertion audience (`portcullis:<service>`) this route accepts. */
  service: DirectoryServiceName;
  summary: string;
  /** Default: every `:name` of the path as a string. */
  params?: P;
  query?: Q;
  body?: B;
  /** A body of bytes instead of JSON: the media types it may hold (documentation) and its size limit (413 beyond). */
  rawBody?: { mediaTypes: string[]; limitBytes: number };
  /** The JSON answer; null: no body; `{ binary }`: bytes of these media types. */
  response: Schema | null | { binary: string[] };
  status: number;
  /** Send a strong ETag of the JSON body (single resources); GETs then honour If-None-Match. */
  etag?: boolean;
  handler(input: OperationInput<z.output<P>, z.output<Q>, z.output<B>>): Promise<Reply>;
}

/** `'/orgs/:org/teams/:team'` -> `{ org: string; team: string }`: the default params of a path. */
type PathParams<Path extends string> = Path extends `${string}:${infer Name}/${infer Rest}`
  ? { [K in Name]: string } & PathParams<`/${Rest}`>
  : Path extends `${string}:${infer Name}`
    ? { [K in Name]: string }
    : Record<never, string>;
type NoQuery = z.ZodType<Record<string, unknown>>;
type NoBody = z.ZodType<undefined>;

/** An operation with its schemas' types erased, as the registry holds it (handlers are checked by defineOperation). */
export type Operation = OperationSpec<Schema, Schema, Schema>;

export function defineOperation<
  Path extends string,
  P extends Schema = z.ZodType<PathParams<Path>>,
  Q extends Schema = NoQuery,
  B extends Schema = NoBody,
>(spec: OperationSpec<P, Q, B> & { path: Path }): Operation {
  return spec;
}

/** The caller's users.id; 403 until the caller has registered. */
export function requireUser(actor: Actor): string {
  if (actor.userId === null) throw new ForbiddenError('register first: PUT /users/me');
  return actor.userId;
}

const JSON_LIMIT = '64kb';

/** Express routes for `operations`, each checking the assertion before reading the body. */
export function mountOperations(
  app: express.Express,
  operations: readonly Operation[],
  deps: { verifier: AssertionVerifier; idempotency: IdempotencyStore },
): void {
  for (const operation of operations) {
    const authenticate = async (req: Request, res: Response, next: NextFunction) => {
      res.locals.actor = await deps.verifier.verify(req.headers, operation.service);
      next();
    };
    const parseBody = operation.rawBody
      ? express.raw({ type: () => true, limit: operation.rawBody.limitBytes })
      : express.json({ limit: JSON_LIMIT });
    const route = app.route(operation.path);
    route[operation.method.toLowerCase() as Lowercase<HttpMethod>](authenticate, parseBody, (req: Request, res: Response) =>
      runOperation(operation, req, res, deps.idempotency),
    );
  }
}

async function runOperation(operation: Operation, req: Request, res: Response, idempotency: IdempotencyStore): Promise<void> {
  const actor = res.locals.actor as Actor;
  const params = parse(
    operation.params ?? defaultParams(operation.path),
    req.params,
    (issues) => new NotFoundError(`no such resource: ${issues}`),
  );
  const query = operation.query ? parse(operation.query, req.query, (issues) => new InputError(`invalid query: ${issues}`)) : {};
  const raw = operation.rawBody && Buffer.isBuffer(req.body) ? req.body : undefined;
  let body: unknown;
  if (operation.body) {
    if (req.body === undefined && hasBody(req))
      throw new InputError(`the body must be JSON (Content-Type: application/json), not ${req.headers['content-type'] ?? 'untyped'}`, 415);
    body = parse(operation.body, req.body, (issues) => new InputError(`invalid body: ${issues}`, 422));
  }
  const input = { params, query, body, raw, actor, headers: req.headers };

  const key = operation.method === 'POST' ? req.headers['idempotency-key'] : undefined;
  if (typeof key !== 'string' || key === '') {
    send(operation, req, res, await operation.handler(input));
    return;
  }
  if (key.length > 255) throw new InputError('Idempotency-Key is longer than 255 characters');
  const claim = await idempotency.claim({ actor: actor.sub, key, method: operation.method, path: req.path, body: req.body });
  if (claim.kind === 'replay') {
    sendAnswer(res, claim.answer, true);
    return;
  }
  let reply: Reply;
  try {
    reply = await operation.handler(input);
  } catch (error) {
    await idempotency.release(actor.sub, key);
    throw error;
  }
  const answer = answerOf(operation, reply);
  await idempotency.complete(actor.sub, key, answer);
  sendAnswer(res, answer, false);
}

function send(operation: Operation, req: Request, res: Response, reply: Reply): void {
  if (reply.binary) {
    res
      .status(reply.status ?? operation.status)
      .set(reply.headers ?? {})
      .type(reply.binary.contentType)
      .send(reply.binary.data);
    return;
  }
  const answer = answerOf(operation, reply);
  if (req.method === 'GET' && answer.headers.etag && notModified(req.headers, answer.headers.etag)) {
    res.status(304).set({ etag: answer.headers.etag }).end();
    return;
  }
  sendAnswer(res, answer, false);
}

function answerOf(operation: Operation, reply: Reply): StoredAnswer {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(reply.headers ?? {})) headers[name.toLowerCase()] = value;
  if (operation.etag && reply.body !== undefined && headers.etag === undefined) headers.etag = etagOf(reply.body);
  return { status: reply.status ?? operation.status, headers, body: reply.body };
}

function sendAnswer(res: Response, answer: StoredAnswer, replayed: boolean): void {
  res.status(answer.status).set(answer.headers);
  if (replayed) res.set('idempotent-replayed', 'true');
  if (answer.body === undefined || answer.body === null) res.end();
  else res.json(answer.body);
}

function hasBody(req: Request): boolean {
  return Number(req.headers['content-length'] ?? 0) > 0 || req.headers['transfer-encoding'] !== undefined;
}

function parse<T>(schema: z.ZodType<T>, value: unknown, error: (issues: string) => Error): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  throw error(result.error.issues.map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`).join('; '));
}

const pathParameterNames = (path: string) => [...path.matchAll(/:(\w+)/g)].map((match) => match[1]!);

function defaultParams(path: string): Schema {
  return z.object(Object.fromEntries(pathParameterNames(path).map((name) => [name, z.string()])));
}

/** The OpenAPI 3.1 document of `operations`, from the same zod schemas that validate requests. */
export function openApiDocument(operations: readonly Operation[], info: { title: string; version: string }): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const operation of operations) {
    const path = operation.path.replace(/:(\w+)/g, '{$1}');
    const parameters = [
      ...schemaParameters(operation.params ?? defaultParams(operation.path), 'path'),
      ...(operation.query ? schemaParameters(operation.query, 'query') : []),
      ...(operation.method === 'POST'
        ? [
            {
              name: 'Idempotency-Key',
              in: 'header',
              required: false,
              schema: { type: 'string', maxLength: 255 },
              description: 'the same key and body within 24 h get the first answer again',
            },
          ]
        : []),
      ...(operation.etag && operation.method !== 'GET' && operation.method !== 'POST'
        ? [
            {
              name: 'If-Match',
              in: 'header',
              required: false,
              schema: { type: 'string' },
              description: '412 when the resource no longer has this ETag',
            },
          ]
        : []),
    ];
    const requestBody = operation.body
      ? { required: true, content: { 'application/json': { schema: jsonSchema(operation.body, 'input') } } }
      : operation.rawBody
        ? {
            required: true,
            content: Object.fromEntries(
              operation.rawBody.mediaTypes.map((type) => [
                type,
                { schema: { type: 'string', contentMediaType: type, maxLength: operation.rawBody!.limitBytes } },
              ]),
            ),
          }
        : undefined;
    const response = operation.response;
    const content =
      response === null
        ? undefined
        : 'binary' in response
          ? Object.fromEntries(response.binary.map((type) => [type, { schema: { type: 'string', contentMediaType: type } }]))
          : { 'application/json': { schema: jsonSchema(response, 'output') } };
    (paths[path] ??= {})[operation.method.toLowerCase()] = {
      operationId: operationId(operation),
      summary: operation.summary,
      tags: [operation.service],
      ...(parameters.length > 0 ? { parameters } : {}),
      ...(requestBody ? { requestBody } : {}),
      responses: {
        [String(operation.status)]: {
          description: operation.summary,
          ...(operation.etag ? { headers: { ETag: { schema: { type: 'string' } } } } : {}),
          ...(content ? { content } : {}),
        },
        default: {
          description: 'an error (RFC 9457 problem details)',
          content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } },
        },
      },
    };
  }
  return {
    openapi: '3.1.0',
    info,
    security: [{ portcullisAssertion: [] }],
    paths,
    components: {
      securitySchemes: {
        portcullisAssertion: {
          type: 'apiKey',
          in: 'header',
          name: 'x-portcullis-assertion',
          description: "the Portcullis gateway's signed identity assertion",
        },
      },
      schemas: {
        Problem: {
          type: 'object',
          required: ['type', 'title', 'status', 'detail'],
          properties: {
            type: { type: 'string' },
            title: { type: 'string' },
            status: { type: 'integer' },
            detail: { type: 'string' },
            request_id: { type: 'string' },
            decision_id: { type: 'string' },
          },
        },
      },
    },
  };
}

function operationId(operation: Operation): string {
  const words = operation.path
    .split('/')
    .filter(Boolean)
    .map((segment) => (segment.startsWith(':') ? `by-${segment.slice(1)}` : segment));
  return [operation.method.toLowerCase(), ...words].join('-').replace(/[-_]+(\w)/g, (_, letter: string) => letter.toUpperCase());
}

function jsonSchema(schema: Schema, io: 'input' | 'output'): Record<string, unknown> {
  const { $schema: _ignored, ...rest } = z.toJSONSchema(schema, { io, target: 'draft-2020-12', unrepresentable: 'any' }) as Record<
    string,
    unknown
  >;
  return rest;
}

function schemaParameters(schema: Schema, location: 'path' | 'query'): Record<string, unknown>[] {
  const object = jsonSchema(schema, 'input') as { properties?: Record<string, Record<string, unknown>>; required?: string[] };
  return Object.entries(object.properties ?? {}).map(([name, property]) => ({
    name,
    in: location,
    required: location === 'path' || (object.required ?? []).includes(name),
    schema: property,
  }));
}
