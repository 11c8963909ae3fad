// A real upstream on loopback (the demo's echo service) that also keeps what it received,
// so tests can see exactly which path, headers and body the gateway forwarded.
import type http from 'node:http';
import { startEchoService, type EchoedRequest } from '../../src/demo/echo-service';

export type { EchoedRequest };

export interface EchoUpstream {
  url: string;
  received: EchoedRequest[];
  /** Replace the default echo behaviour (e.g. to answer slowly or never). */
  handler: ((req: http.IncomingMessage, res: http.ServerResponse, body: string) => void) | undefined;
  close(): Promise<void>;
}

export async function startEchoUpstream(service: string): Promise<EchoUpstream> {
  const upstream: EchoUpstream = { url: '', received: [], handler: undefined, close: () => Promise.resolve() };
  const echo = await startEchoService(service, {
    onRequest: (echoed, req, res) => {
      upstream.received.push(echoed);
      if (!upstream.handler) return false;
      upstream.handler(req, res, echoed.body);
      return true;
    },
  });
  upstream.url = echo.url;
  upstream.close = () => echo.close();
  return upstream;
}
