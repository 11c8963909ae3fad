// A stand-in upstream service that answers every request with what it received: method,
// path, headers (including the gateway's identity headers) and body. The demo runs one per
// service so a person sees exactly what an upstream behind Portcullis would see.
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface EchoedRequest {
  service: string;
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export interface EchoServiceOptions {
  host?: string;
  port?: number;
  /** Sees every request; return true when it answered the request itself. */
  onRequest?: (echoed: EchoedRequest, req: http.IncomingMessage, res: http.ServerResponse) => boolean | void;
}

export interface EchoService {
  url: string;
  close(): Promise<void>;
}

export async function startEchoService(service: string, options: EchoServiceOptions = {}): Promise<EchoService> {
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const echoed: EchoedRequest = {
        service,
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
      };
      if (options.onRequest?.(echoed, req, res) === true) return;
      res.setHeader('content-type', 'application/json');
      res.end(`${JSON.stringify(echoed, null, 2)}\n`);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', resolve);
  });
  const address = server.address() as AddressInfo;
  return {
    url: `http://${address.address}:${address.port}`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
