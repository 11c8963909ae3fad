// The admin app with nothing behind it (no admin token, no keys, a policy never evaluated, a
// database that always answers) on a loopback port: for tests that only probe its health paths.
import { createAdminApp } from '../../src/admin/admin-server';

export async function startBareAdminApp(): Promise<{ url: string; close: () => void }> {
  const app = createAdminApp({
    token: undefined,
    jwks: () => ({ keys: [] }),
    policy: {
      current: {
        revision: 'r',
        evaluate: () => {
          throw new Error('unused');
        },
      },
      source: 's',
      loadedAt: new Date(),
    },
    pingDatabase: () => Promise.resolve(),
  });
  const server = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const { port } = server.address() as { port: number };
  return { url: `http://127.0.0.1:${port}`, close: () => server.close() };
}
