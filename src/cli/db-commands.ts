// `db url`: the connection URL of the database Portcullis uses, so `psql "$(npx portcullis db url)"`
// opens it. With a config file: its database.url, else the embedded PostgreSQL that `serve`
// runs under the state folder; without one: $DATABASE_URL, else the one the demo runs.
import path from 'node:path';
import type { Command } from 'commander';
import { loadConfigFile } from '../config/load-config';
import { runningEmbeddedUrl } from '../db/embedded-database';
import type { CliContext } from './cli-context';

export function registerDbCommands(program: Command, ctx: CliContext): void {
  const db = program.command('db').description('the PostgreSQL database Portcullis uses');
  db.command('url')
    .description('print its connection URL (for the embedded database: while a gateway or the demo runs it)')
    .option(
      '--state-dir <dir>',
      'the state folder of the gateway or demo (default: $PORTCULLIS_STATE_DIR, else .portcullis/ beside the config file)',
    )
    .action((flags: { stateDir?: string }) => {
      const file = ctx.configFile();
      const configured = file ? loadConfigFile(file, ctx.io.env).database.url : ctx.io.env.DATABASE_URL;
      if (configured) {
        ctx.io.out(configured);
        return;
      }
      const dataDir = path.join(ctx.stateDir(file, flags.stateDir), 'pgdata');
      // Started here, the server would stop when this command exits: only a running one is useful.
      const running = runningEmbeddedUrl(dataDir);
      if (!running) {
        throw new Error(
          `no database is configured and no embedded PostgreSQL is running on ${dataDir}: start the gateway or the demo first (or pass --config / --state-dir)`,
        );
      }
      ctx.io.out(running);
    });
}
