// Sends bytes exactly as written, for requests fetch() would refuse or tidy up
// (duplicate headers, smuggling attempts, absolute-form targets).
import net from 'node:net';

export interface RawResponse {
  status: number;
  headers: string;
  body: string;
  raw: string;
}

export function rawRequest(baseUrl: string, request: string, timeoutMs = 3000): Promise<RawResponse> {
  const { hostname, port } = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname);
    let raw = '';
    const timer = setTimeout(() => socket.destroy(), timeoutMs);
    socket.on('data', (chunk) => (raw += chunk.toString('latin1')));
    socket.on('error', reject);
    socket.on('close', () => {
      clearTimeout(timer);
      const [head = '', ...rest] = raw.split('\r\n\r\n');
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0), headers: head, body: rest.join('\r\n\r\n'), raw });
    });
    socket.write(request.replace(/\r?\n/g, '\r\n'));
  });
}
