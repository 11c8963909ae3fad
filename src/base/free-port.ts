// A loopback port for a process that is told its port before it binds it: the embedded
// PostgreSQL, the cluster test's gateways and nginx, the benches' servers.
import { readFileSync } from 'node:fs';
import net from 'node:net';

/** Where freePort starts looking: above the well-known and most registered services' ports. */
const LOWEST_PORT = 10_000;

const ATTEMPTS = 50;

/** Every caller binds loopback only. */
const LOOPBACK = '127.0.0.1';

/**
 * A loopback port free right now, picked below the kernel's ephemeral range. A port the kernel
 * picked (listen on 0) and handed back could be taken by any outgoing connection of the same
 * machine before the process it was meant for binds it (a gateway of the cluster test once
 * failed to start with EADDRINUSE that way); ports below the range are only ever taken by a
 * listener asking for them by number.
 */
export async function freePort(range: { lowest?: number; highest?: number } = {}): Promise<number> {
  const { lowest = LOWEST_PORT, highest = ephemeralRangeStart() - 1 } = range;
  for (let attempt = 0; attempt < ATTEMPTS; attempt += 1) {
    const port = lowest + Math.floor(Math.random() * (highest - lowest + 1));
    if (await canListen(port)) return port;
  }
  throw new Error(`no free port on ${LOOPBACK} between ${lowest} and ${highest} after ${ATTEMPTS} tries`);
}

/** The first port of the kernel's ephemeral range; Linux's default where it cannot be read. */
export function ephemeralRangeStart(): number {
  try {
    const start = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    if (Number.isInteger(start) && start > LOWEST_PORT + 1_000) return start;
  } catch {
    // not Linux
  }
  return 32_768;
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen(port, LOOPBACK, () => server.close(() => resolve(true)));
  });
}
