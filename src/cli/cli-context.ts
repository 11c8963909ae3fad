// What every CLI command needs from the edge: the environment, output, the config file
// resolution rules, the OPA toolchain options and the exit code. Commands live in their own
// files and receive this context; nothing below the CLI reads process.env.
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import type { ToolchainOptions } from '../authz/opa-toolchain';
import type { PortcullisConfig } from '../config/config-schema';
import { loadConfigFile } from '../config/load-config';
import { EmbeddedDatabase } from '../db/embedded-database';
import { ConfigError } from '../base/errors';
import { projectRoot } from '../project-root';

export interface Io {
  env: NodeJS.ProcessEnv;
  out: (line: string) => void;
  err: (line: string) => void;
  cwd: string;
  /** Resolves once `out` has taken what was written (pipes are asynchronous): commands that stream a lot wait on it. */
  drain?: () => Promise<void>;
}

export interface CliContext {
  io: Io;
  setExitCode(code: number): void;
  toolchain(log?: (line: string) => void): ToolchainOptions;
  /** --config, else $PORTCULLIS_CONFIG, else ./portcullis.yaml when it exists. */
  configFile(): string | undefined;
  requireConfig(): { config: PortcullisConfig; file: string };
  /**
   * `--state-dir` (`flag`), else $PORTCULLIS_STATE_DIR, else `.portcullis/` beside the config
   * file, or in the project when there is none.
   */
  stateDir(configFile: string | undefined, flag?: string): string;
  /** Resolves on the first SIGINT or SIGTERM; a second one stops the embedded PostgreSQL and exits. */
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
    stateDir: (file, flag) => {
      // A config mounted read-only (a container's /etc/portcullis/) needs the state elsewhere.
      const explicit = flag || io.env.PORTCULLIS_STATE_DIR;
      return explicit ? path.resolve(io.cwd, explicit) : path.join(file ? path.dirname(file) : projectRoot, '.portcullis');
    },
    untilSignal: () =>
      new Promise((resolve) => {
        const stop = (signal: string) => {
          process.off('SIGINT', stop);
          process.off('SIGTERM', stop);
          process.on('SIGINT', stopNow);
          process.on('SIGTERM', stopNow);
          resolve(signal);
        };
        // A second signal during a slow shutdown exits at once, but never leaves the embedded
        // PostgreSQL running (it has its own process group: the terminal's Ctrl-C misses it).
        let stoppingNow = false;
        const stopNow = (signal: string) => {
          if (stoppingNow) return;
          stoppingNow = true;
          io.err(`${signal} again: stopping now, without waiting for the shutdown to finish`);
          void EmbeddedDatabase.stopAll().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
        };
        process.on('SIGINT', stop);
        process.on('SIGTERM', stop);
      }),
  };
}
