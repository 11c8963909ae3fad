// The command line (design §3.7): serve | migrate | policy build | policy test. This is the
// edge where the environment is read; everything below receives parsed values only.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { Command, CommanderError } from 'commander';
import pino from 'pino';
import { Portcullis } from '../app';
import { buildWasmBundle, resolveOpa, type ToolchainOptions } from '../authz/opa-toolchain';
import type { PortcullisConfig } from '../config/config-schema';
import { loadConfigFile } from '../config/load-config';
import { createDatabase, migrateToLatest } from '../db/database';
import { EmbeddedDatabase } from '../db/embedded-database';
import { ConfigError } from '../http/errors';
import { projectRoot } from '../project-root';
import { runPolicyTests } from './policy-test';

interface Io {
  env: NodeJS.ProcessEnv;
  out: (line: string) => void;
  err: (line: string) => void;
  cwd: string;
}

const defaultIo = (): Io => ({
  env: process.env,
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
  cwd: process.cwd(),
});

/** Runs the CLI; resolves to the exit code. Errors become one line on stderr. */
export async function main(argv: string[], io: Io = defaultIo()): Promise<number> {
  let exitCode = 0;
  const program = buildProgram(io, (code) => (exitCode = code));
  program.exitOverride();
  program.configureOutput({ writeOut: (text) => io.out(text.trimEnd()), writeErr: (text) => io.err(text.trimEnd()) });
  try {
    await program.parseAsync(argv);
    return exitCode;
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode;
    io.err(`portcullis: ${error instanceof Error ? error.message.split('\n')[0] : String(error)}`);
    return error instanceof ConfigError ? 2 : 1;
  }
}

function buildProgram(io: Io, setExitCode: (code: number) => void): Command {
  const program = new Command('portcullis')
    .description('Policy-as-code authorization gateway')
    .option('-c, --config <file>', 'configuration file (default: $PORTCULLIS_CONFIG or ./portcullis.yaml)')
    .showHelpAfterError();
  const toolchain = (log = io.err): ToolchainOptions => ({ opaBin: io.env.OPA_BIN, searchPath: io.env.PATH, log });
  const configFile = (): string | undefined => {
    const explicit = (program.opts().config as string | undefined) ?? io.env.PORTCULLIS_CONFIG;
    if (explicit) return path.resolve(io.cwd, explicit);
    const local = path.resolve(io.cwd, 'portcullis.yaml');
    return existsSync(local) ? local : undefined;
  };
  const requireConfig = (): { config: PortcullisConfig; file: string } => {
    const file = configFile();
    if (!file) throw new ConfigError('no configuration file: pass --config FILE or set PORTCULLIS_CONFIG');
    return { config: loadConfigFile(file, io.env), file };
  };

  program
    .command('serve')
    .description('run the gateway and its admin port until SIGINT/SIGTERM')
    .action(async () => {
      const { config, file } = requireConfig();
      const logger = pino({ name: 'portcullis', level: io.env.LOG_LEVEL ?? 'info' });
      const gateway = await Portcullis.start(config, { logger, stateDir: stateDirFor(file), toolchain: toolchain((line) => logger.info(line)) });
      await new Promise<void>((resolve) => {
        const stop = (signal: string) => {
          logger.info({ signal }, 'shutting down');
          gateway.close().then(resolve, (error: unknown) => {
            logger.error({ err: error }, 'shutdown failed');
            setExitCode(1);
            resolve();
          });
        };
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
    });

  program
    .command('migrate')
    .description('apply pending database migrations (idempotent)')
    .action(async () => {
      const file = configFile();
      const url = file ? loadConfigFile(file, io.env).database.url : io.env.DATABASE_URL;
      const embedded = url ? undefined : await EmbeddedDatabase.create({ dataDir: path.join(stateDirFor(file), 'pgdata') });
      const db = createDatabase({ url: url ?? embedded!.url });
      try {
        const applied = await migrateToLatest(db);
        io.out(applied.length ? `applied ${applied.length} migration(s): ${applied.join(', ')}` : 'database is up to date');
      } finally {
        await db.destroy();
        await embedded?.stop();
      }
    });

  const policy = program.command('policy').description('build and test Rego policies');
  policy
    .command('build')
    .description('compile policies to an OPA WebAssembly bundle (opa build -t wasm)')
    .option('-s, --source <dir>', 'policy directory', 'policies')
    .option('-o, --output <file>', 'bundle to write', path.join('build', 'bundle.tar.gz'))
    .option('-e, --entrypoint <path>', 'entrypoint', 'portcullis/decision')
    .action(async (options: { source: string; output: string; entrypoint: string }) => {
      const opa = await resolveOpa(toolchain());
      const started = Date.now();
      const { output, revision } = await buildWasmBundle({
        opa,
        source: path.resolve(io.cwd, options.source),
        entrypoints: [options.entrypoint],
        output: path.resolve(io.cwd, options.output),
      });
      io.out(`built ${path.relative(io.cwd, output) || output} (revision ${revision}) in ${Date.now() - started} ms`);
    });
  policy
    .command('test')
    .description('opa check --strict, opa fmt --list and opa test --coverage over the policies')
    .option('-s, --source <dir>', 'policy directory', 'policies')
    .option('--min-coverage <percent>', 'fail below this coverage', '90')
    .action(async (options: { source: string; minCoverage: string }) => {
      const opa = await resolveOpa(toolchain());
      const ok = await runPolicyTests({ opa, source: path.resolve(io.cwd, options.source), minCoverage: Number(options.minCoverage), out: io.out, err: io.err });
      setExitCode(ok ? 0 : 1);
    });

  return program;
}

/** `.portcullis/` beside the config file, or in the project when there is none. */
function stateDirFor(configFile: string | undefined): string {
  return path.join(configFile ? path.dirname(configFile) : projectRoot, '.portcullis');
}
