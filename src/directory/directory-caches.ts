// Builds the directory stage from the `cache:` configuration: the PostgreSQL read models,
// and with caching enabled, the cached loaders in front of them plus the change listener
// that keeps them fresh. Called once by the composition root.
import type { Knex } from 'knex';
import type { Logger } from 'pino';
import type { PortcullisConfig } from '../config/config-schema';
import { CachedFactsLoader } from './cached-facts-loader';
import { CachedSubjectLoader } from './cached-subject-loader';
import { DirectoryChangeListener } from './change-listener';
import type { CacheStatsSource } from './directory-cache';
import { PgDirectoryReader } from './pg-directory-reader';
import { PgFactsLoader } from './pg-facts-loader';
import { PgSubjectLoader } from './pg-subject-loader';
import type { DirectoryReader, FactsLoader, SubjectLoader } from './subject';

export interface DirectoryCaches {
  subjects: SubjectLoader;
  facts: FactsLoader;
  /** Both in one statement, for a request that has neither cached (with caching disabled: every request). */
  reader?: DirectoryReader;
  /** The cached loaders by name (none when caching is disabled). */
  caches: Record<string, CacheStatsSource>;
  /**
   * Called once a write this gateway forwarded has been answered: the caches catch up with
   * every change committed so far (one round trip on the change listener's connection), and
   * until they have, catchingUp() says what to wait for.
   */
  afterWrite(): void;
  /**
   * What a request must wait for before it reads the caches: the catching up after a write
   * answered before it was read (read your writes, through one gateway); undefined when there
   * is none, nearly always.
   */
  catchingUp(): Promise<void> | undefined;
  close(): Promise<void>;
}

export async function createDirectoryCaches(options: {
  config: PortcullisConfig['cache'];
  db: Knex;
  /** The same database, for the listener's own connection. */
  url: string;
  logger: Logger;
}): Promise<DirectoryCaches> {
  const { config, db, url, logger } = options;
  const subjects = new PgSubjectLoader(db);
  const facts = new PgFactsLoader(db);
  const reader = new PgDirectoryReader(db);
  if (!config.enabled) {
    return { subjects, facts, reader, caches: {}, afterWrite: () => {}, catchingUp: () => undefined, close: () => Promise.resolve() };
  }
  const listener = new DirectoryChangeListener({ url, logger });
  const cacheOptions = { maxEntries: config.max_entries, ttlMs: config.ttl_s * 1000 };
  const cachedSubjects = new CachedSubjectLoader(subjects, listener, cacheOptions);
  const cachedFacts = new CachedFactsLoader(facts, listener, cacheOptions);
  listener.subscribe(cachedSubjects);
  listener.subscribe(cachedFacts);
  await listener.start();
  return {
    subjects: cachedSubjects,
    facts: cachedFacts,
    reader,
    caches: { subjects: cachedSubjects, facts: cachedFacts },
    afterWrite: () => void listener.sync(),
    catchingUp: () => listener.catchingUp,
    close: () => listener.close(),
  };
}
