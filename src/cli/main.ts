// The command line (design §3.7): serve | start | migrate | policy build | policy test | demo |
// token | explain | decisions | db url. This is the edge where the environment is read; each
// command group lives in its own file.
import { Command, CommanderError } from 'commander';
import { ConfigError } from '../http/errors';
import { createCliContext, type Io } from './cli-context';
import { registerDbCommands } from './db-commands';
import { registerDecisionCommands } from './decisions-commands';
import { registerDemoCommands } from './demo-commands';
import { registerExplainCommand } from './explain-command';
import { registerPolicyCommands } from './policy-commands';
import { registerServeCommands } from './serve-commands';

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
  const ctx = createCliContext(program, io, setExitCode);
  registerServeCommands(program, ctx);
  registerPolicyCommands(program, ctx);
  registerDemoCommands(program, ctx);
  registerExplainCommand(program, ctx);
  registerDecisionCommands(program, ctx);
  registerDbCommands(program, ctx);
  return program;
}
