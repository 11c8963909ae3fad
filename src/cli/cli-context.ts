// What every CLI command needs from the edge: the environment, output, the config file
// resolution rules, the OPA toolchain options and the exit code. Commands live in their own
// files and receive this context; nothing below the CLI reads process.env.
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import type { ToolchainOptions } from '../authz/opa-toolchain';
import type { PortcullisConfig } from '../config/config-schema';
import { loadConfigFile } from '../config/load-config';
import { ConfigError } from '../http/errors';
import { projectRoot } from '../project-root';

export interface Io {
  env: NodeJS.ProcessEnv;
  out: (line: string) => void;
  err: (line: string) => void;
  cwd: string;
}

export interface CliContext {
  io: Io;
  setExitCode(code: number): void;
  toolchain(log?: (line: string) => void): ToolchainOptions;
  /** --config, else $PORTCULLIS_CONFIG, else ./portcullis.yaml when it exists. */
  configFile(): string | undefined;
  requireConfig(): { config: PortcullisConfig; file: string };
  /** `.portcullis/` beside the config file, or in the project when there is none. */
  stateDir(configFile: string | undefined): string;
  /** Resolves on the first SIGINT or SIGTERM. */
  untilSignal(): Promise<string>;
}

export function createCliContext(program: Command, io: Io, setExitCode: (code: number) => void): CliContext {
  const configFile = (): string | undefined => {
    const explicit = (program.opts().config as string | undefined) ?? io.env.PORTCULLIS_CONFIG;
    if (explicit) return path.resolve(io.cwd, explicit);
    const local = path.resolve(io.cwd, 'portcullis.yaml');
    return existsSync(local) ? local : undefined;
  };
  return {
    io,
    setExitCode,
    toolchain: (log = io.err) => ({ opaBin: io.env.OPA_BIN, searchPath: io.env.PATH, log }),
    configFile,
    requireConfig: () => {
      const file = configFile();
      if (!file) throw new ConfigError('no configuration file: pass --config FILE or set PORTCULLIS_CONFIG');
      return { config: loadConfigFile(file, io.env), file };
    },
    stateDir: (file) => path.join(file ? path.dirname(file) : projectRoot, '.portcullis'),
    untilSignal: () =>
      new Promise((resolve) => {
        const stop = (signal: string) => {
          process.off('SIGINT', stop);
          process.off('SIGTERM', stop);
          resolve(signal);
        };
        process.on('SIGINT', stop);
        process.on('SIGTERM', stop);
      }),
  };
}
