// `serve`, `migrate` and `start` (serve with a config file, the demo without one).
import path from 'node:path';
import type { Command } from 'commander';
import pino from 'pino';
import { Portcullis } from '../app';
import { loadConfigFile } from '../config/load-config';
import { createDatabase, migrateToLatest } from '../db/database';
import { EmbeddedDatabase } from '../db/embedded-database';
import type { CliContext } from './cli-context';
import { runDemo } from './demo-commands';

export function registerServeCommands(program: Command, ctx: CliContext): void {
  const serve = async () => {
    const { config, file } = ctx.requireConfig();
    const logger = pino({ name: 'portcullis', level: ctx.io.env.LOG_LEVEL ?? 'info' });
    const gateway = await Portcullis.start(config, { logger, stateDir: ctx.stateDir(file), toolchain: ctx.toolchain((line) => logger.info(line)) });
    const signal = await ctx.untilSignal();
    logger.info({ signal }, 'shutting down');
    await gateway.close();
  };

  program.command('serve').description('run the gateway and its admin port until SIGINT/SIGTERM').action(serve);

  program
    .command('start')
    .description('serve with the configuration file; without one, run the zero-config demo')
    .action(async () => (ctx.configFile() ? serve() : runDemo(ctx, {})));

  program
    .command('migrate')
    .description('apply pending database migrations (idempotent)')
    .action(async () => {
      const file = ctx.configFile();
      const url = file ? loadConfigFile(file, ctx.io.env).database.url : ctx.io.env.DATABASE_URL;
      const embedded = url ? undefined : await EmbeddedDatabase.create({ dataDir: path.join(ctx.stateDir(file), 'pgdata') });
      const db = createDatabase({ url: url ?? embedded!.url });
      try {
        const applied = await migrateToLatest(db);
        ctx.io.out(applied.length ? `applied ${applied.length} migration(s): ${applied.join(', ')}` : 'database is up to date');
      } finally {
        await db.destroy();
        await embedded?.stop();
      }
    });
}
