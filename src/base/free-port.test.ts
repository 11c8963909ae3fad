import net from 'node:net';
import { describe, expect, it } from '@jest/globals';
import { ephemeralRangeStart, freePort } from './free-port';

function listen(port: number): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

const close = (servers: net.Server[]) => Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));

/** Listens on the first and third of three free neighbouring ports (tried afresh if another process holds one). */
async function takeOuterTwoOfThree(): Promise<{ lowest: number; taken: net.Server[] }> {
  for (let attempt = 0; ; attempt += 1) {
    const lowest = await freePort({ highest: ephemeralRangeStart() - 3 });
    const taken: net.Server[] = [];
    try {
      taken.push(await listen(lowest), await listen(lowest + 2));
      const middle = await listen(lowest + 1);
      await close([middle]);
      return { lowest, taken };
    } catch (error) {
      await close(taken);
      if (attempt === 10) throw error;
    }
  }
}

describe('freePort', () => {
  it('picks a port below the ephemeral range that a server can then listen on', async () => {
    const port = await freePort();
    expect(port).toBeGreaterThanOrEqual(10_000);
    expect(port).toBeLessThan(ephemeralRangeStart());
    await close([await listen(port)]);
  });

  it('passes over ports that are listened on, and says so when every one is', async () => {
    // Three neighbouring ports, the outer two taken by this test: the middle one is the only answer.
    const { lowest, taken } = await takeOuterTwoOfThree();
    try {
      expect(await freePort({ lowest, highest: lowest + 2 })).toBe(lowest + 1);
      taken.push(await listen(lowest + 1));
      await expect(freePort({ lowest, highest: lowest + 2 })).rejects.toThrow(`between ${lowest} and ${lowest + 2} after 50 tries`);
    } finally {
      await close(taken);
    }
  });
});
