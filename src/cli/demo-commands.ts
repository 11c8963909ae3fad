// `demo` (the zero-config start behind `npm start`) and `token` (mint a development token).
import path from 'node:path';
import type { Command } from 'commander';
import pino from 'pino';
import { DEMO_USERS, demoClaims, demoSubject } from '../demo/demo-data';
import { Demo } from '../demo/demo';
import { loadDevIdentity } from '../demo/dev-identity';
import { InputError } from '../base/errors';
import type { CliContext } from './cli-context';

interface DemoFlags {
  port?: string;
  adminPort?: string;
  stateDir?: string;
  shadow?: string;
}

export const SHADOW_HELP =
  'a candidate policy (directory or bundle) judged beside the shipped one, never enforced; see `policy disagreements`';

export async function runDemo(ctx: CliContext, flags: DemoFlags): Promise<void> {
  const stateDir = flags.stateDir ? path.resolve(ctx.io.cwd, flags.stateDir) : ctx.stateDir(undefined);
  // Listening before the start says "Press Ctrl-C": a Ctrl-C that comes early stops the demo
  // once it is up, instead of killing the process and leaving PostgreSQL behind.
  const signalled = ctx.untilSignal();
  const demo = await Demo.start({
    stateDir,
    host: '127.0.0.1',
    port: Number(flags.port ?? 8080),
    adminPort: Number(flags.adminPort ?? 9090),
    logger: pino({ name: 'portcullis', level: ctx.io.env.LOG_LEVEL ?? 'warn' }),
    toolchain: ctx.toolchain(ctx.io.out),
    out: ctx.io.out,
    shadow: flags.shadow ? path.resolve(ctx.io.cwd, flags.shadow) : undefined,
  });
  await signalled;
  ctx.io.out('stopping: gateway, directory service, echo service, PostgreSQL…');
  await demo.close();
  ctx.io.out('stopped');
}

export function registerDemoCommands(program: Command, ctx: CliContext): void {
  program
    .command('demo')
    .description('zero-config demo: embedded PostgreSQL, demo data, the directory service, development tokens')
    .option('--port <port>', 'gateway port (taken: any free port)', '8080')
    .option('--admin-port <port>', 'admin port (taken: any free port)', '9090')
    .option('--state-dir <dir>', 'where the database and development key live (default: .portcullis/ in the project)')
    .option('--shadow <dir>', SHADOW_HELP)
    .action((flags: DemoFlags) => runDemo(ctx, flags));

  program
    .command('token')
    .description('mint a development token for a demo user (valid 12 hours)')
    .requiredOption(
      '-u, --user <name>',
      `demo user: ${DEMO_USERS.join(', ')} (any name works: an unknown user may register with PUT /users/me)`,
    )
    .option('--ttl <hours>', 'lifetime in hours, at most 24 (the gateway refuses longer-lived tokens: auth.max_token_lifetime_s)', '12')
    .option('--state-dir <dir>', 'the demo state folder (default: .portcullis/ in the project)')
    .action(async (flags: { user: string; ttl: string; stateDir?: string }) => {
      const hours = Number(flags.ttl);
      if (!(hours > 0 && hours <= 24))
        throw new InputError(
          '--ttl: must be a number of hours above 0 and at most 24 (the demo gateway refuses tokens living longer than auth.max_token_lifetime_s, 24 h)',
        );
      const stateDir = flags.stateDir ? path.resolve(ctx.io.cwd, flags.stateDir) : ctx.stateDir(undefined);
      const identity = await loadDevIdentity(stateDir);
      ctx.io.out(await identity.mint(demoSubject(flags.user), demoClaims(flags.user), Math.round(hours * 3600)));
    });
}
