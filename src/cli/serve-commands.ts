// `serve`, `migrate` and `start` (serve with a config file, the demo without one).
import path from 'node:path';
import type { Command } from 'commander';
import pino from 'pino';
import { Portcullis } from '../app';
import { loadConfigFile } from '../config/load-config';
import { createDatabase, migrateToLatest } from '../db/database';
import { ConfigError } from '../base/errors';
import { EmbeddedDatabase } from '../db/embedded-database';
import type { CliContext } from './cli-context';
import { runDemo, SHADOW_HELP } from './demo-commands';

interface StateFlags {
  stateDir?: string;
}

const STATE_DIR_HELP =
  'state folder: embedded database, compiled policies, spool (default: $PORTCULLIS_STATE_DIR, else .portcullis/ beside the config file)';

export function registerServeCommands(program: Command, ctx: CliContext): void {
  const serve = async (flags: StateFlags) => {
    const { config, file } = ctx.requireConfig();
    const logger = pino({ name: 'portcullis', level: ctx.io.env.LOG_LEVEL ?? 'info' });
    // A promise nobody awaited that rejects is a bug, not a reason to drop every request in flight.
    process.on('unhandledRejection', (reason) =>
      logger.error({ err: reason }, 'unhandled promise rejection (a bug, please report it); still serving'),
    );
    const signalled = ctx.untilSignal(); // before the start: an early signal stops the gateway once up, never mid-start
    const gateway = await Portcullis.start(config, {
      logger,
      stateDir: ctx.stateDir(file, flags.stateDir),
      toolchain: ctx.toolchain((line) => logger.info(line)),
    });
    const signal = await signalled;
    logger.info({ signal }, 'shutting down');
    await gateway.close();
  };

  program
    .command('serve')
    .description('run the gateway and its admin port until SIGINT/SIGTERM')
    .option('--state-dir <dir>', STATE_DIR_HELP)
    .action(serve);

  program
    .command('start')
    .description('serve with the configuration file; without one, run the zero-config demo')
    .option('--state-dir <dir>', STATE_DIR_HELP)
    .option('--shadow <dir>', `demo only: ${SHADOW_HELP} (with a configuration file, set policy.shadow.source)`)
    .action(async (flags: StateFlags & { shadow?: string }) => {
      const file = ctx.configFile();
      if (!file) return runDemo(ctx, flags);
      if (flags.shadow) throw new ConfigError(`--shadow is for the demo: with ${file}, set policy.shadow.source there`);
      return serve(flags);
    });

  program
    .command('migrate')
    .description('apply pending database migrations (idempotent)')
    .option('--state-dir <dir>', STATE_DIR_HELP)
    .action(async (flags: StateFlags) => {
      const file = ctx.configFile();
      const url = file ? loadConfigFile(file, ctx.io.env).database.url : ctx.io.env.DATABASE_URL;
      const embedded = url
        ? undefined
        : await EmbeddedDatabase.create({ dataDir: path.join(ctx.stateDir(file, flags.stateDir), 'pgdata') });
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
