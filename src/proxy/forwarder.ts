// Forwarding stage: one http-proxy-middleware instance per upstream service, over
// keep-alive connections. The caller has already set req.url to the canonical path and
// replaced every identity header; this module only moves bytes and maps upstream failures.
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { createProxyMiddleware, debugProxyErrorsPlugin, type RequestHandler } from 'http-proxy-middleware';
import { UpstreamError } from '../http/errors';
import { stripHopByHop } from '../http/inspect-request';

export interface ForwardOptions {
  services: Readonly<Record<string, { url: string }>>;
  /** Idle time allowed while waiting for the upstream before answering 504. */
  timeoutMs: number;
  /** Called when an upstream fails before the response started (answer the client). */
  onError: (error: UpstreamError, req: IncomingMessage, res: ServerResponse) => void;
}

export interface Forwarder {
  forward(service: string, req: IncomingMessage, res: ServerResponse): void;
  close(): void;
}

const TIMED_OUT = Symbol('portcullis.upstreamTimedOut');
type TimedRequest = IncomingMessage & { [TIMED_OUT]?: true };

export class HttpProxyForwarder implements Forwarder {
  private readonly proxies = new Map<string, RequestHandler>();
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 256, maxFreeSockets: 64, scheduling: 'lifo' });

  constructor(private readonly options: ForwardOptions) {
    for (const [name, service] of Object.entries(options.services)) {
      this.proxies.set(name, this.createProxy(service.url));
    }
  }

  forward(service: string, req: IncomingMessage, res: ServerResponse): void {
    const proxy = this.proxies.get(service);
    if (!proxy) {
      this.options.onError(new UpstreamError(`no upstream is configured for service "${service}"`, 502), req, res);
      return;
    }
    // http-proxy-middleware prefers req.originalUrl (set by Express) over req.url.
    (req as IncomingMessage & { originalUrl?: string }).originalUrl = req.url;
    void proxy(req, res);
  }

  close(): void {
    this.agent.destroy();
  }

  private createProxy(target: string): RequestHandler {
    const { timeoutMs, onError } = this.options;
    return createProxyMiddleware({
      target,
      changeOrigin: true,
      xfwd: true,
      agent: this.agent,
      ejectPlugins: true,
      plugins: [
        debugProxyErrorsPlugin,
        (proxyServer) => {
          proxyServer.on('proxyReq', (proxyReq, req) => {
            proxyReq.setHeader('connection', 'keep-alive');
            proxyReq.setTimeout(timeoutMs, () => {
              (req as TimedRequest)[TIMED_OUT] = true;
              proxyReq.destroy(new Error('upstream timed out'));
            });
          });
          proxyServer.on('proxyRes', (proxyRes) => {
            proxyRes.on('error', () => undefined);
            // The upstream's hop-by-hop headers describe the upstream hop, not the client's.
            stripHopByHop(proxyRes.headers);
          });
          proxyServer.on('error', (error, req, res) => {
            const response = res as ServerResponse;
            if (typeof response.setHeader !== 'function') return;
            if (response.headersSent) {
              response.destroy();
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
