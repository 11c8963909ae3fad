// The command line (design §3.7): serve | start | migrate | policy build | policy test | demo |
// token | explain | decisions | db url | directory. This is the edge where the environment is read; each
// command group lives in its own file.
import { Command, CommanderError } from 'commander';
import { once } from 'node:events';
import { EmbeddedDatabase } from '../db/embedded-database';
import { ConfigError } from '../base/errors';
import { createCliContext, type Io } from './cli-context';
import { registerDbCommands } from './db-commands';
import { registerDecisionCommands } from './decisions-commands';
import { registerDemoCommands } from './demo-commands';
import { registerDirectoryCommands } from './directory-commands';
import { registerExplainCommand } from './explain-command';
import { registerPolicyCommands } from './policy-commands';
import { registerServeCommands } from './serve-commands';

const defaultIo = (): Io => {
  let readerGone = false;
  // `portcullis decisions query … | head`: when the reader closes the pipe, stop quietly and
  // successfully, like other Unix tools, instead of a stack trace (stopping an embedded
  // PostgreSQL this command started).
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (readerGone) return;
    readerGone = true;
    if (error.code !== 'EPIPE') process.stderr.write(`portcullis: cannot write to stdout: ${error.message}\n`);
    void EmbeddedDatabase.stopAll().finally(() => process.exit(error.code === 'EPIPE' ? 0 : 1));
  });
  return {
    env: process.env,
    out: (line) => {
      if (!readerGone) process.stdout.write(`${line}\n`);
    },
    err: (line) => process.stderr.write(`${line}\n`),
    cwd: process.cwd(),
    drain: async () => {
      // Once the reader is gone the process is exiting: the command waits here instead of going on.
      if (process.stdout.writableNeedDrain && !readerGone) await once(process.stdout, 'drain').catch(() => new Promise(() => undefined));
    },
  };
};

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
  const ctx = createCliContext(program, io, setExitCode);
  registerServeCommands(program, ctx);
  registerPolicyCommands(program, ctx);
  registerDemoCommands(program, ctx);
  registerExplainCommand(program, ctx);
  registerDecisionCommands(program, ctx);
  registerDbCommands(program, ctx);
  registerDirectoryCommands(program, ctx);
  return program;
}
