// Forwarding stage: one http-proxy-middleware instance per upstream service, over
// keep-alive connections. The caller has already set req.url to the canonical path and
// replaced every identity header; this module decides which client credentials and proxy
// headers reach each upstream, moves bytes and maps upstream failures.
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { Readable, type Writable } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { createProxyMiddleware, debugProxyErrorsPlugin, type RequestHandler } from 'http-proxy-middleware';
import { InputError, UpstreamError } from '../base/errors';
import { formMethodOverrideGuard, type FormMethodOverrideGuard } from '../http/form-method-override';
import { withoutHopByHop } from '../http/inspect-request';
import { ForwardedHeaders } from './forwarded-headers';

export interface UpstreamService {
  url: string;
  /** Keep the client's `Authorization` (a token valid for every service) for this upstream. */
  forward_authorization: boolean;
  /** Keep the client's `Cookie` for this upstream. */
  forward_cookies: boolean;
}

export interface ForwardOptions {
  services: Readonly<Record<string, UpstreamService>>;
  /** Peers (addresses or CIDR ranges) whose X-Forwarded-For / Forwarded chain is kept and extended. */
  trustedProxies: readonly string[];
  /** Idle time allowed while waiting for the upstream before answering 504. */
  timeoutMs: number;
  /** A streamed (chunked) body is cut off past this; declared lengths are checked before forwarding. */
  bodyLimitBytes: number;
  /** What a compressed form or JSON body may decode to while it is checked for `_method` (413 beyond). */
  decodedBodyLimitBytes: number;
  /** Called when forwarding fails before the response started (answer the client). */
  onError: (error: UpstreamError | InputError, req: IncomingMessage, res: ServerResponse) => void;
}

export interface Forwarder {
  forward(service: string, req: IncomingMessage, res: ServerResponse): void;
  close(): void;
}

const TIMED_OUT = Symbol('portcullis.upstreamTimedOut');
const TOO_LARGE = Symbol('portcullis.bodyTooLarge');
/** Why the body was stopped on its way (a `_method` form field or JSON member, an unreadable form). */
const REFUSED = Symbol('portcullis.bodyRefused');
type TimedRequest = IncomingMessage & { [TIMED_OUT]?: true; [TOO_LARGE]?: true; [REFUSED]?: InputError };

export class HttpProxyForwarder implements Forwarder {
  private readonly proxies = new Map<string, RequestHandler>();
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 256, maxFreeSockets: 64, scheduling: 'lifo' });
  private readonly forwardedHeaders: ForwardedHeaders;

  constructor(private readonly options: ForwardOptions) {
    this.forwardedHeaders = new ForwardedHeaders(options.trustedProxies);
    for (const [name, service] of Object.entries(options.services)) {
      this.proxies.set(name, this.createProxy(service.url));
    }
  }

  forward(service: string, req: IncomingMessage, res: ServerResponse): void {
    const proxy = this.proxies.get(service);
    const settings = this.options.services[service];
    if (!proxy || !settings) {
      this.options.onError(new UpstreamError(`no upstream is configured for service "${service}"`, 502), req, res);
      return;
    }
    const { headers } = req;
    // The upstream authenticates the gateway's assertion, scoped to it; the client's token is
    // valid for every service, and Proxy-Authorization was meant for a proxy, never an upstream.
    if (!settings.forward_authorization) delete headers.authorization;
    if (!settings.forward_cookies) delete headers.cookie;
    delete headers['proxy-authorization'];
    this.forwardedHeaders.apply(headers, {
      peer: req.socket.remoteAddress,
      host: headers.host,
      proto: (req.socket as TLSSocket).encrypted === true ? 'https' : 'http',
    });
    let guard: FormMethodOverrideGuard | undefined;
    try {
      guard = formMethodOverrideGuard(req.method ?? '', headers, { maxDecodedBytes: this.options.decodedBodyLimitBytes });
    } catch (error) {
      res.setHeader('connection', 'close');
      this.options.onError(error as InputError, req, res);
      return;
    }
    if (guard) sendBodyThrough(req, guard);
    // http-proxy-middleware prefers req.originalUrl (set by Express) over req.url.
    (req as IncomingMessage & { originalUrl?: string }).originalUrl = req.url;
    void proxy(req, res);
  }

  close(): void {
    this.agent.destroy();
  }

  private createProxy(target: string): RequestHandler {
    const { timeoutMs, bodyLimitBytes, onError } = this.options;
    return createProxyMiddleware({
      target,
      changeOrigin: true,
      // X-Forwarded-* and Forwarded are set in forward(): xfwd would append to the client's.
      xfwd: false,
      agent: this.agent,
      ejectPlugins: true,
      plugins: [
        debugProxyErrorsPlugin,
        (proxyServer) => {
          proxyServer.on('proxyReq', (proxyReq, req, res) => {
            proxyReq.setHeader('connection', 'keep-alive');
            // A client that is gone (it closed the connection, or the gateway cut it at shutdown)
            // leaves no upstream request open: http-proxy only notices an incomplete request body.
            res.once('close', () => {
              if (!res.writableFinished) proxyReq.destroy();
            });
            proxyReq.setTimeout(timeoutMs, () => {
              (req as TimedRequest)[TIMED_OUT] = true;
              proxyReq.destroy(new Error('upstream timed out'));
            });
            // Only a chunked body can outgrow the limit here (a declared length was checked before
            // forwarding; without either header a request has no body), so a GET gets no listener.
            if (req.headers['content-length'] === undefined && req.headers['transfer-encoding'] !== undefined) {
              // http-proxy pipes the body right after this event, so no chunk is missed here.
              let received = 0;
              req.on('data', (chunk: Buffer) => {
                received += chunk.length;
                if (received > bodyLimitBytes && !(req as TimedRequest)[TOO_LARGE]) {
                  (req as TimedRequest)[TOO_LARGE] = true;
                  req.unpipe(proxyReq);
                  proxyReq.destroy(new Error('request body too large'));
                }
              });
            }
          });
          proxyServer.on('proxyRes', (proxyRes, _req, res) => {
            proxyRes.on('error', () => undefined);
            // An upstream that dies mid-body must not leave the client waiting for the rest.
            proxyRes.on('close', () => {
              if (!proxyRes.complete) res.destroy();
            });
            // The upstream's hop-by-hop headers describe the upstream hop, not the client's.
            proxyRes.headers = withoutHopByHop(proxyRes.headers);
          });
          proxyServer.on('error', (error, req, res) => {
            const response = res as ServerResponse;
            if (typeof response.setHeader !== 'function') return;
            if (response.destroyed) return; // the client is gone: nobody to answer
            if (response.headersSent) {
              response.destroy();
              return;
            }
            // A body stopped on its way (over the limit, or refused by the `_method` guard): the rest of it is unread.
            const refused = (req as TimedRequest)[TOO_LARGE]
              ? new InputError(`the request body exceeds ${bodyLimitBytes} bytes`, 413)
              : (req as TimedRequest)[REFUSED];
            if (refused) {
              response.setHeader('connection', 'close');
              onError(refused, req, response);
              return;
            }
            const timedOut = (req as TimedRequest)[TIMED_OUT] === true;
            const code = (error as NodeJS.ErrnoException).code;
            onError(
              timedOut
                ? new UpstreamError(`the upstream did not answer within ${timeoutMs} ms`, 504, { cause: error })
                : new UpstreamError(`the upstream could not be reached${code ? ` (${code})` : ''}`, 502, { cause: error }),
              req,
              response,
            );
          });
        },
      ],
    });
  }
}

/**
 * Makes the body reach the upstream through `guard`. http-proxy sends a request's body with
 * `req.pipe(upstreamRequest)` (its per-call `buffer` option is not reachable through
 * http-proxy-middleware), so this request's pipe() goes through the guard instead. When the
 * guard refuses the body, the upstream request is destroyed with the rest of it unsent, and
 * the proxy's error handler answers the client with the guard's reason.
 */
function sendBodyThrough(req: IncomingMessage, guard: FormMethodOverrideGuard): void {
  req.pipe = <T extends NodeJS.WritableStream>(upstream: T, options?: { end?: boolean }): T => {
    guard.once('error', (error: InputError) => {
      (req as TimedRequest)[REFUSED] = error;
      req.unpipe(guard);
      (upstream as unknown as Writable).destroy(error);
    });
    Readable.prototype.pipe.call(req, guard);
    return guard.pipe(upstream, options);
  };
}
