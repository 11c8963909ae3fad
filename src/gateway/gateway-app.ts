// The gateway port's framework (design §3.8): Portcullis is one Express-compatible middleware
// (authorize, record, forward) over the framework-agnostic request pipeline, and the app
// `portcullis serve` runs is Express with that middleware and nothing in front of it.
import type { IncomingMessage, ServerResponse } from 'node:http';
import express, { type Express } from 'express';

/**
 * Answers every request it is given: forwarded when the policy allows it, otherwise a
 * problem+json denial; it never calls `next`. Mount it last. It fits `app.use()` of Express
 * (and Connect), and plain `http.createServer()` as well.
 */
export type GatewayMiddleware = (req: IncomingMessage, res: ServerResponse, next?: (error?: unknown) => void) => void;

export function createGatewayApp(middleware: GatewayMiddleware): Express {
  const app = express();
  // Only what the upstream or the pipeline sends: no X-Powered-By, no ETag computed over problem bodies.
  app.disable('x-powered-by');
  app.disable('etag');
  app.use(middleware);
  return app;
}
