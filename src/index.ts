// The library entry point (`require('portcullis')`): createPortcullis starts what the gateway
// needs (database pools, policies, caches, audit trail, admin port) and hands back its
// Express-compatible middleware, for mounting in an app the caller already runs.
import path from 'node:path';
import type { z } from 'zod';
import pino, { type Logger } from 'pino';
import { Portcullis } from './app';
import type { ToolchainOptions } from './authz/opa-toolchain';
import type { configSchema, PortcullisConfig } from './config/config-schema';
import { parseConfig, type Environment } from './config/load-config';
import type { GatewayMiddleware } from './gateway/gateway-app';

/** The configuration as written in portcullis.yaml (README "Configuration"), before defaults. */
export type PortcullisSettings = z.input<typeof configSchema>;

export interface CreatePortcullisOptions {
  /** Default: pino at `info` on stdout. */
  logger?: Logger;
  /** Relative paths in the configuration (policy bundle, key files, spool) are read from here. Default: the working directory. */
  baseDir?: string;
  /** Embedded database, compiled policies, spool. Default: `.portcullis/` in baseDir. */
  stateDir?: string;
  /** Values of `${VAR}` in the configuration. Default: process.env. */
  env?: Environment;
  /** How an `opa` binary is found when a policy folder must be compiled. Default: `OPA_BIN`, then the PATH. */
  toolchain?: ToolchainOptions;
}

/** A running Portcullis without a gateway port of its own: mount `middleware` last in your app. */
export interface PortcullisGate {
  /** Authorize, record, forward; answers every request it is given (never calls `next`). */
  readonly middleware: GatewayMiddleware;
  /** The admin port (`admin.host`/`admin.port`): health, readiness, metrics, policy and decision APIs. */
  readonly adminUrl: string;
  /**
   * Refuses new requests (503), drains those in flight within `server.shutdown_grace_ms`,
   * makes every decision record durable, then closes pools and the admin port. Never rejects.
   */
  close(): Promise<void>;
}

/** Validates `settings` with the same schema as portcullis.yaml (errors name the key path), then starts. */
export async function createPortcullis(settings: PortcullisSettings, options: CreatePortcullisOptions = {}): Promise<PortcullisGate> {
  const env = options.env ?? process.env;
  const baseDir = path.resolve(options.baseDir ?? process.cwd());
  const config = parseConfig(settings, env, baseDir);
  const logger = options.logger ?? pino({ name: 'portcullis', level: env.LOG_LEVEL ?? 'info' });
  const gateway = await Portcullis.start(config, {
    logger,
    stateDir: options.stateDir ?? path.join(baseDir, '.portcullis'),
    toolchain: options.toolchain ?? { opaBin: env.OPA_BIN, searchPath: env.PATH },
    serveGateway: false,
  });
  return {
    middleware: gateway.middleware,
    get adminUrl() {
      return gateway.adminUrl;
    },
    close: () => gateway.close(),
  };
}

export type { GatewayMiddleware, PortcullisConfig };
// For the caller's own server: requests and responses made with the app's prototypes (README).
export { createExpressServer, expressServerClasses, type ExpressServerClasses } from './http/express-server';
