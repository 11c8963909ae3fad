// `decisions verify` and `decisions replay --fail-on-change` answer a question with their exit
// code, for CI: 1 means "tampered" or "changed", so whatever keeps them from answering (a bad
// flag, the database away) exits 2 instead, and a pipeline can tell the two apart.
import { CommanderError, type Command } from 'commander';
import type { CliContext } from './cli-context';

export const COULD_NOT_CHECK = 2;

/** Usage errors of `command` (unknown or missing options) exit 2; help still exits 0. */
export function usageErrorsCouldNotCheck(command: Command): Command {
  return command.exitOverride((error) => {
    throw error.exitCode === 0 ? error : new CommanderError(COULD_NOT_CHECK, error.code, error.message);
  });
}

/** Runs a check's action; an error is one line on stderr and exit code 2. */
export async function check(ctx: CliContext, work: () => Promise<void>): Promise<void> {
  try {
    await work();
  } catch (error) {
    ctx.io.err(`portcullis: ${error instanceof Error ? error.message.split('\n')[0] : String(error)}`);
    ctx.setExitCode(COULD_NOT_CHECK);
  }
}
