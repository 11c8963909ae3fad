// An HTTP server for an Express app whose requests and responses are born with the app's
// prototypes. Express gives each request and response the app's `request` and `response`
// prototypes with Object.setPrototypeOf, on every request; in V8, once a request's and a
// response's prototypes change after they were made, much of what the request allocates
// survives the next scavenge into the old generation (BENCHMARKS.md, twelfth round: Express and
// http-proxy-middleware promoted 1.7 MB a scavenge, 0.01 MB on these classes, and served twice
// the requests per second in `npm run bench`). Here the server makes them with the app's
// prototypes from the start, and Express's own Object.setPrototypeOf finds the prototype already
// in place and changes nothing. Express behaves as before: `req.app`, `res.locals`, mounted apps
// and routers (an app mounted before this is called keeps the parent's prototypes of before,
// which these classes add no member to).
import http from 'node:http';
import type { Express } from 'express';

/** What `http.createServer(options, app)` needs for it: request and response classes made with the app's prototypes. */
export interface ExpressServerClasses {
  IncomingMessage: typeof http.IncomingMessage;
  ServerResponse: typeof http.ServerResponse;
}

/** One pair of classes per app, so that a second call (another server for the same app) gives the same ones. */
const classesOfApp = new WeakMap<Express, ExpressServerClasses>();

/**
 * The classes for `http.createServer({ ...options, ...expressServerClasses(app) }, app)`. The
 * app's `request` and `response` become these classes' prototypes (which inherit from the ones
 * before), so call it before the app serves; `app.request`'s own members (`app`) stay reachable.
 */
export function expressServerClasses(app: Express): ExpressServerClasses {
  const known = classesOfApp.get(app);
  if (known) return known;
  class ExpressRequest extends http.IncomingMessage {}
  class ExpressResponse extends http.ServerResponse {}
  Object.setPrototypeOf(ExpressRequest.prototype, app.request);
  Object.setPrototypeOf(ExpressResponse.prototype, app.response);
  app.request = ExpressRequest.prototype as typeof app.request;
  app.response = ExpressResponse.prototype as typeof app.response;
  // ServerResponse's generic constructor type is wider than a subclass's; the class is the same at run time.
  const classes: ExpressServerClasses = { IncomingMessage: ExpressRequest, ServerResponse: ExpressResponse as typeof http.ServerResponse };
  classesOfApp.set(app, classes);
  return classes;
}

/** `http.createServer(options, app)`, with the request and response classes of expressServerClasses(app). */
export function createExpressServer(app: Express, options: http.ServerOptions = {}): http.Server {
  return http.createServer({ ...options, ...expressServerClasses(app) }, app);
}
