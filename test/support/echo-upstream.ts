// A real upstream on loopback that answers with what it received, so tests can see exactly
// which path, headers and body the gateway forwarded.
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface EchoedRequest {
  service: string;
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export interface EchoUpstream {
  url: string;
  received: EchoedRequest[];
  /** Replace the default echo behaviour (e.g. to answer slowly). */
  handler: ((req: http.IncomingMessage, res: http.ServerResponse, body: string) => void) | undefined;
  close(): Promise<void>;
}

export async function startEchoUpstream(service: string): Promise<EchoUpstream> {
  const upstream: EchoUpstream = {
    url: '',
    received: [],
    handler: undefined,
    close: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const echoed: EchoedRequest = { service, method: req.method ?? '', url: req.url ?? '', headers: req.headers, body };
      upstream.received.push(echoed);
      if (upstream.handler) return upstream.handler(req, res, body);
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(echoed));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  upstream.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return upstream;
}
