// `directory serve | import FILE | export | events`: the directory service and the operator's
// bootstrap without SQL. serve reads the same configuration file as the gateway (its
// `directory`, `database` and `assertion` sections); the others only need the database.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import type { Knex } from 'knex';
import pino from 'pino';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { migrationConfig } from '../db/database';
import { DirectoryEvents, listEvents } from '../directory-service/directory-events';
import { describeSummary, exportDirectory, importDirectory } from '../directory-service/directory-import';
import { DirectoryService } from '../directory-service/directory-service';
import { ConfigError } from '../base/errors';
import type { CliContext } from './cli-context';
import { withDecisionLog } from './decisions-database';

export function registerDirectoryCommands(program: Command, ctx: CliContext): void {
  const directory = program
    .command('directory')
    .description('the directory service: users, organizations, members, teams, roles, invitations, projects');

  directory
    .command('serve')
    .description('run the directory service on directory.host:directory.port until SIGINT/SIGTERM (behind the gateway)')
    .action(async () => {
      const { config } = ctx.requireConfig();
      const logger = pino({ name: 'portcullis-directory', level: ctx.io.env.LOG_LEVEL ?? 'info' });
      const signalled = ctx.untilSignal();
      const service = await DirectoryService.start(config, { logger });
      const signal = await signalled;
      logger.info({ signal }, 'shutting down');
      await service.close();
    });

  directory
    .command('import <file>')
    .description(
      'create or update the users, organizations, members, roles, teams, projects, credentials and invitations of a YAML file (idempotent)',
    )
    .action(async (file: string) => {
      const location = path.resolve(ctx.io.cwd, file);
      let document: unknown;
      try {
        document = parseYaml(await readFile(location, 'utf8'));
      } catch (error) {
        throw new Error(`cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message.split('\n')[0]}`);
      }
      const masked = ctx.configFile() ? ctx.requireConfig().config.directory.event_mask : [];
      await withDirectoryDatabase(ctx, async (db) => {
        const summary = await importDirectory(db, document, new DirectoryEvents(masked));
        ctx.io.out(`${file}: ${describeSummary(summary)}`);
      });
    });

  directory
    .command('export')
    .description('print the whole directory as YAML, in the format import reads')
    .action(() => withDirectoryDatabase(ctx, async (db) => ctx.io.out(stringifyYaml(await exportDirectory(db)).trimEnd())));

  directory
    .command('events')
    .description('print the directory change record, newest first')
    .option('--org <slug>', 'only the events of this organization')
    .option('--limit <n>', 'at most this many events (1-10000)', '50')
    .action((flags: { org?: string; limit: string }) => {
      const limit = Number(flags.limit);
      if (!Number.isInteger(limit) || limit < 1 || limit > 10_000)
        throw new ConfigError(`--limit must be an integer from 1 to 10000, not ${flags.limit}`);
      return withDirectoryDatabase(ctx, async (db) => {
        const events = await listEvents(db, { limit, ...(flags.org !== undefined ? { organizationSlug: flags.org } : {}) });
        if (events.length === 0) ctx.io.out(flags.org ? `no directory events for ${flags.org}` : 'no directory events');
        for (const event of events) {
          const target = event.target_id ? `${event.target_type}:${event.target_id}` : event.target_type;
          ctx.io.out(
            [
              event.time.toISOString(),
              event.action,
              event.organization_slug ?? '-',
              target,
              `actor=${event.actor ?? '-'}`,
              `request=${event.request_id ?? '-'}`,
            ].join('  '),
          );
        }
      });
    });
}

/** The database of the gateway (as the `decisions` commands find it), migrated. */
function withDirectoryDatabase(ctx: CliContext, work: (db: Knex) => Promise<void>): Promise<void> {
  return withDecisionLog(ctx, async ({ db }) => {
    const [, pending] = (await db.migrate.list(migrationConfig())) as [unknown[], unknown[]];
    if (pending.length > 0)
      throw new ConfigError(`the database has ${pending.length} pending migration(s): run \`portcullis migrate\` first`);
    await work(db);
  });
}
