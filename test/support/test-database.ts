// One fresh database per test file, cloned from the migrated template (fast: a file copy).
import { randomBytes } from 'node:crypto';
import type { Knex } from 'knex';
import { createDatabase } from '../../src/db/database';

export const TEMPLATE_DATABASE = 'portcullis_template';

export function withDatabaseName(url: string, name: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${name}`;
  return parsed.toString();
}

export interface TestDatabase {
  url: string;
  db: Knex;
  drop(): Promise<void>;
}

/** A clone of the migrated template, or with `empty` a database with no tables at all. */
export async function createTestDatabase(options: { empty?: boolean } = {}): Promise<TestDatabase> {
  const adminUrl = process.env.PORTCULLIS_TEST_DATABASE_URL;
  if (!adminUrl) throw new Error('PORTCULLIS_TEST_DATABASE_URL is not set: run tests through jest (global setup)');
  const name = `test_${randomBytes(6).toString('hex')}`;
  const admin = createDatabase({ url: adminUrl });
  try {
    await admin.raw(`create database ${name}${options.empty ? '' : ` template ${TEMPLATE_DATABASE}`}`);
  } finally {
    await admin.destroy();
  }
  const url = withDatabaseName(adminUrl, name);
  const db = createDatabase({ url });
  return {
    url,
    db,
    async drop() {
      await db.destroy();
      const cleanup = createDatabase({ url: adminUrl });
      try {
        await cleanup.raw(`drop database if exists ${name} with (force)`);
      } finally {
        await cleanup.destroy();
      }
    },
  };
}
