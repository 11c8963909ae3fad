// The database the `decisions` commands read: the config's database.url, else $DATABASE_URL,
// else the embedded PostgreSQL under the state folder (the one a running demo or `serve`
// already started, or started here for the command and stopped after it).
import path from 'node:path';
import type { Knex } from 'knex';
import { loadConfigFile } from '../config/load-config';
import { createDatabase } from '../db/database';
import { EmbeddedDatabase, runningEmbeddedUrl } from '../db/embedded-database';
import type { CliContext } from './cli-context';

export interface DecisionLogConnection {
  db: Knex;
  /** The configured policy entrypoint, when a config file was found. */
  entrypoint: string | undefined;
  close(): Promise<void>;
}

export async function openDecisionLog(ctx: CliContext): Promise<DecisionLogConnection> {
  const file = ctx.configFile();
  const config = file ? loadConfigFile(file, ctx.io.env) : undefined;
  const dataDir = path.join(ctx.stateDir(file), 'pgdata');
  const url = config?.database.url ?? ctx.io.env.DATABASE_URL ?? runningEmbeddedUrl(dataDir);
  const embedded = url ? undefined : await EmbeddedDatabase.create({ dataDir });
  const db = createDatabase({ url: url ?? embedded!.url, poolMax: 4, acquireTimeoutMs: 10_000 });
  return {
    db,
    entrypoint: config?.policy.entrypoint,
    async close() {
      await db.destroy();
      await embedded?.stop();
    },
  };
}

/** Runs `work` with the decision log open, and closes it whatever happens. */
export async function withDecisionLog<T>(ctx: CliContext, work: (log: DecisionLogConnection) => Promise<T>): Promise<T> {
  const log = await openDecisionLog(ctx);
  try {
    return await work(log);
  } finally {
    await log.close();
  }
}
