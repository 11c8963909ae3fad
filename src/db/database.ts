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
  /** Where Knex's own warnings go (connection errors); default: Knex's console logging. */
  warn?: (message: string) => void;
}

export function createDatabase(options: DatabaseOptions): Knex {
  return knex({
    client: 'pg',
    connection: { connectionString: options.url, application_name: 'portcullis', connectionTimeoutMillis: 2000 },
    pool: { min: 0, max: options.poolMax ?? 10 },
    acquireConnectionTimeout: options.acquireTimeoutMs ?? 2000,
    ...(options.warn ? { log: { warn: options.warn, error: options.warn, deprecate: options.warn, debug: () => undefined } } : {}),
  });
}

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
