// PostgreSQL access for the whole gateway: one Knex pool, and the project's migrations
// (kept in their own bookkeeping table so other services' Knex migrations never clash).
import path from 'node:path';
import knex, { type Knex } from 'knex';
import { projectRoot } from '../project-root';

export const MIGRATIONS_TABLE = 'portcullis_migrations';

export interface DatabaseOptions {
  url: string;
  poolMax?: number;
  /** Milliseconds a request waits for a pooled connection before failing. */
  acquireTimeoutMs?: number;
  /**
   * The request path's deadline: PostgreSQL cancels any statement of this pool that runs (or
   * waits for a lock) longer, and the client gives up QUERY_TIMEOUT_MARGIN_MS later on one
   * that gets no answer at all (a half-open connection). Unset (migrations, the decision
   * writer, retention, verify): statements run as long as they need.
   */
  statementTimeoutMs?: number;
  /** Where Knex's own warnings go (connection errors); default: Knex's console logging. */
  warn?: (message: string) => void;
}

/** How much later than PostgreSQL's statement timeout the client stops waiting for an answer. */
export const QUERY_TIMEOUT_MARGIN_MS = 500;

export function createDatabase(options: DatabaseOptions): Knex {
  const { statementTimeoutMs } = options;
  // Connections whose query the client gave up on: the server never answered, so the
  // connection is still busy with it and must not be handed out again.
  const abandoned = new Set<string>();
  const db = knex({
    client: 'pg',
    connection: {
      connectionString: options.url,
      application_name: 'portcullis',
      connectionTimeoutMillis: 2000,
      ...(statementTimeoutMs ? { statement_timeout: statementTimeoutMs, query_timeout: statementTimeoutMs + QUERY_TIMEOUT_MARGIN_MS } : {}),
    },
    pool: {
      min: 0,
      max: options.poolMax ?? 10,
      ...(statementTimeoutMs ? { validate: (connection: { __knexUid?: string }) => !abandoned.delete(connection.__knexUid ?? '') } : {}),
    },
    acquireConnectionTimeout: options.acquireTimeoutMs ?? 2000,
    ...(options.warn ? { log: { warn: options.warn, error: options.warn, deprecate: options.warn, debug: () => undefined } } : {}),
  });
  if (statementTimeoutMs) {
    db.on('query-error', (error: Error, query: { __knexUid?: string }) => {
      // Knex has prefixed the statement to pg's message by now.
      if (error.message.endsWith(PG_QUERY_READ_TIMEOUT) && query.__knexUid) abandoned.add(query.__knexUid);
    });
  }
  return db;
}

/** The message of the error pg gives when `query_timeout` passes without an answer. */
const PG_QUERY_READ_TIMEOUT = 'Query read timeout';

export function migrationConfig(): Knex.MigratorConfig {
  return {
    directory: path.join(projectRoot, 'migrations'),
    tableName: MIGRATIONS_TABLE,
    loadExtensions: ['.js'],
  };
}

/** Applies every pending migration; running it again does nothing. Returns the names applied. */
export async function migrateToLatest(db: Knex): Promise<string[]> {
  const [, applied] = (await db.migrate.latest(migrationConfig())) as [number, string[]];
  return applied;
}
