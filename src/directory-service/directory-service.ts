// Runs the directory service: its own pool on the gateway's database (already migrated), the
// assertion verifier, and the Express app on directory.host:directory.port. Used by
// `portcullis directory serve`, the demo and the tests.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Knex } from 'knex';
import type { Logger } from 'pino';
import type { PortcullisConfig } from '../config/config-schema';
import { createDatabase, migrationConfig } from '../db/database';
import { ConfigError } from '../base/errors';
import { AssertionVerifier } from './assertion-verifier';
import { createExpressServer } from '../http/express-server';
import { createDirectoryApp } from './directory-app';
import { DirectoryEvents } from './directory-events';

export interface DirectoryServiceOptions {
  logger: Logger;
  /** The database when database.url is unset (the demo's embedded PostgreSQL). */
  databaseUrl?: string;
  /** Outgoing HTTP (the password reset webhook); default: the global fetch. */
  fetch?: typeof fetch;
}

/** Writes may wait on row locks of concurrent writes; none should wait longer than this. */
const STATEMENT_TIMEOUT_MS = 10_000;
const CLOSE_GRACE_MS = 5_000;

export class DirectoryService {
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly server: http.Server,
    readonly db: Knex,
  ) {}

  get url(): string {
    const address = this.server.address() as AddressInfo;
    const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    return `http://${host}:${address.port}`;
  }

  static async start(config: PortcullisConfig, options: DirectoryServiceOptions): Promise<DirectoryService> {
    const url = config.database.url ?? options.databaseUrl;
    if (!url) throw new ConfigError('database.url is required: the directory service writes the database the gateway reads');
    const verifier = await AssertionVerifier.create(config);
    const warn = (message: string) => options.logger.warn({ component: 'knex' }, message);
    const db = createDatabase({ url, statementTimeoutMs: STATEMENT_TIMEOUT_MS, warn });
    try {
      const [, pending] = (await db.migrate.list(migrationConfig())) as [unknown[], unknown[]];
      if (pending.length > 0)
        throw new ConfigError(`the database has ${pending.length} pending migration(s): run \`portcullis migrate\` first`);
      const app = createDirectoryApp({
        db,
        verifier,
        events: new DirectoryEvents(config.directory.event_mask),
        config: config.directory,
        logger: options.logger,
        fetch: options.fetch ?? fetch,
      });
      const server = createExpressServer(app);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(config.directory.port, config.directory.host, () => {
          server.off('error', reject);
          resolve();
        });
      });
      const service = new DirectoryService(server, db);
      options.logger.info({ url: service.url }, 'the directory service is ready');
      return service;
    } catch (error) {
      await db.destroy();
      throw error;
    }
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
      this.server.closeIdleConnections();
      // Requests in flight get a moment to finish; then their connections are cut.
      const cut = setTimeout(() => this.server.closeAllConnections(), CLOSE_GRACE_MS);
      await closed;
      clearTimeout(cut);
      await this.db.destroy();
    })();
    return this.closing;
  }
}
