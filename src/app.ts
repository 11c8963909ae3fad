// The composition root: builds every stage from the parsed configuration, wires them into
// the request pipeline, and owns start-up and graceful shutdown. Nothing else constructs stages.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { Knex } from 'knex';
import type { Logger } from 'pino';
import { createAdminApp } from './admin/admin-server';
import { createPolicyRouter } from './admin/policy-routes';
import { GatewayMetrics } from './admin/metrics';
import { decisionRoutes } from './admin/decision-routes';
import { AuditTrail } from './audit/audit-trail';
import { PgDecisionQueryStore } from './audit/pg-decision-query-store';
import { PgShadowDisagreementStore } from './audit/pg-shadow-disagreement-store';
import { JwtAuthenticator } from './authn/jwt-authenticator';
import type { ToolchainOptions } from './authz/opa-toolchain';
import { PolicyExplainer } from './authz/policy-explainer';
import { setUpPolicies } from './authz/policy-setup';
import { RequestJudge } from './authz/request-judge';
import type { PortcullisConfig } from './config/config-schema';
import { createDatabase, migrateToLatest, migrationConfig } from './db/database';
import { EmbeddedDatabase } from './db/embedded-database';
import { createDirectoryCaches } from './directory/directory-caches';
import { PgGrantDirectory } from './directory/pg-grant-directory';
import { ConfigError } from './http/errors';
import { RequestPipeline } from './http/request-pipeline';
import { HttpProxyForwarder } from './proxy/forwarder';
import { IdentityAssertionSigner } from './proxy/identity-assertion';
import { defaultRoutes } from './routes/default-routes';
import { RouteTable } from './routes/route-table';

export interface RuntimeOptions {
  logger: Logger;
  /** Folder for the embedded database and compiled policies (`.portcullis/` beside the config). */
  stateDir: string;
  toolchain: ToolchainOptions;
}

export class Portcullis {
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly gateway: http.Server,
    private readonly admin: http.Server,
    private readonly shutdownSteps: Array<() => Promise<void> | void>,
    readonly logger: Logger,
  ) {}

  get gatewayUrl(): string {
    return urlOf(this.gateway);
  }

  get adminUrl(): string {
    return urlOf(this.admin);
  }

  static async start(config: PortcullisConfig, options: RuntimeOptions): Promise<Portcullis> {
    const { logger } = options;
    const steps: Array<() => Promise<void> | void> = [];
    const cleanUp = async () => {
      for (const step of steps.reverse()) await Promise.resolve(step()).catch(() => undefined);
    };
    try {
      const { db, url: databaseUrl } = await openDatabase(config, options, steps);
      const policies = await setUpPolicies(config.policy, {
        buildDir: options.stateDir,
        toolchain: { ...options.toolchain, log: options.toolchain.log ?? ((line) => logger.info(line)) },
        logger,
        disagreements: new PgShadowDisagreementStore(db),
      });
      steps.push(() => policies.close());
      policies.watch();
      // Disabled caches: a verified token is never reused either.
      const authenticator = await JwtAuthenticator.create(config.auth, config.cache.enabled ? { cacheMaxEntries: config.cache.max_entries } : { cacheTtlMs: 0 });
      const directory = await createDirectoryCaches({ config: config.cache, db, url: databaseUrl, logger });
      steps.push(() => directory.close());
      const assertions = await IdentityAssertionSigner.create(config.assertion);
      if (!config.assertion.signing_key_file) {
        logger.warn('assertion.signing_key_file is not set: identity assertions use a per-process key; set one when running several instances');
      }

      const routes = routeTable(config, logger);
      const audit = await AuditTrail.start({ db, config: config.audit, stateDir: options.stateDir, entrypoint: config.policy.entrypoint, logger });
      const recorder = audit.recorder;
      steps.push(async () => {
        const flushed = await withDeadline(audit.close(), SHUTDOWN_GRACE_MS);
        if (!flushed) logger.error({ backlog: recorder.backlog }, 'decision records could not be written (or spooled) before shutdown');
      });

      const metrics = new GatewayMetrics({
        caches: { tokens: authenticator, ...directory.caches },
        auditBacklog: () => recorder.backlog,
        policyRevision: () => policies.policy.current.revision,
      });
      let pipeline: RequestPipeline | undefined;
      const forwarder = new HttpProxyForwarder({
        services: config.services,
        timeoutMs: config.server.upstream_timeout_ms,
        bodyLimitBytes: config.server.body_limit_bytes,
        onError: (error, req, res) => pipeline?.upstreamFailed(error, req, res),
      });
      steps.push(() => forwarder.close());
      const { subjects, facts } = directory;
      pipeline = new RequestPipeline({
        routes,
        authenticator,
        subjects,
        facts,
        policy: policies.policy,
        shadow: policies.shadow,
        recorder,
        strictAudit: audit.strict,
        assertions,
        forwarder,
        logger,
        observer: metrics,
        bodyLimitBytes: config.server.body_limit_bytes,
      });

      // The pipeline is the whole request handler: no framework on the hot path (Express's
      // per-request work cost more than the rest of the pipeline; see BENCHMARKS.md).
      const gateway = http.createServer(
        {
          headersTimeout: config.server.headers_timeout_ms,
          requestTimeout: config.server.request_timeout_ms,
          maxHeaderSize: config.server.max_header_bytes,
          keepAliveTimeout: 5_000,
          // How often Node checks the two timeouts above (its default, 30 s, would let slow clients linger).
          connectionsCheckingInterval: Math.min(1_000, config.server.headers_timeout_ms),
        },
        pipeline.handle,
      );
      await listen(gateway, config.server.host, config.server.port);
      steps.push(() => closeServer(gateway));

      const adminApp = createAdminApp({
        token: config.admin.token,
        jwks: () => assertions.jwks(),
        metrics: metrics.registry,
        policy: policies.policy,
        policyApi: createPolicyRouter({
          policy: policies.policy,
          shadow: policies.shadow,
          explainer: new PolicyExplainer({
            routes,
            judge: new RequestJudge({ subjects, facts, policy: policies.policy, shadow: policies.shadow }),
            directory: new PgGrantDirectory(db),
            recorder,
          }),
        }),
        decisionApi: decisionRoutes({ decisions: new PgDecisionQueryStore(db), backlog: () => audit.backlog }),
        pingDatabase: async () => {
          await db.raw('select 1').timeout(1000);
        },
      });
      const admin = http.createServer(adminApp);
      await listen(admin, config.admin.host, config.admin.port);
      steps.push(() => closeServer(admin));

      const instance = new Portcullis(gateway, admin, steps, logger);
      logger.info({ gateway: instance.gatewayUrl, admin: instance.adminUrl }, 'portcullis is ready');
      return instance;
    } catch (error) {
      await cleanUp();
      throw error;
    }
  }

  /** Stops accepting, lets requests in flight finish, flushes decision records, closes the database. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      for (const step of [...this.shutdownSteps].reverse()) await step();
    })();
    return this.closing;
  }
}

async function openDatabase(config: PortcullisConfig, options: RuntimeOptions, steps: Array<() => Promise<void> | void>): Promise<{ db: Knex; url: string }> {
  let url = config.database.url;
  if (!url) {
    const started = Date.now();
    const embedded = await EmbeddedDatabase.create({ dataDir: path.join(options.stateDir, 'pgdata') });
    steps.push(() => embedded.stop());
    options.logger.info(`embedded PostgreSQL ${embedded.initialised ? 'initialised and ' : ''}started in ${Date.now() - started} ms`);
    url = embedded.url;
  }
  const db = createDatabase({ url, acquireTimeoutMs: config.database.timeout_ms, warn: (message) => options.logger.warn({ component: 'knex' }, message) });
  steps.push(() => db.destroy());
  if (!config.database.url) {
    await migrateToLatest(db);
  } else {
    const [, pending] = (await db.migrate.list(migrationConfig())) as [unknown[], unknown[]];
    if (pending.length > 0) throw new ConfigError(`the database has ${pending.length} pending migration(s): run \`portcullis migrate\` first`);
  }
  return { db, url };
}

/** Default routes whose upstream service is not configured are dropped (so they answer 404), loudly. */
export function routeTable(config: PortcullisConfig, logger: Logger): RouteTable {
  const missing = new Set(defaultRoutes.map((route) => route.service).filter((service) => !(service in config.services)));
  for (const service of missing) logger.warn(`services.${service} is not configured: its default routes are disabled and answer 404`);
  return new RouteTable(
    config.routes,
    defaultRoutes.filter((route) => !missing.has(route.service)),
  );
}

function listen(server: http.Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

const SHUTDOWN_GRACE_MS = 10_000;

/** Stops accepting; requests in flight get the grace period, then their connections are cut. */
function closeServer(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    const force = setTimeout(() => server.closeAllConnections(), SHUTDOWN_GRACE_MS).unref();
    server.close(() => {
      clearTimeout(force);
      resolve();
    });
    server.closeIdleConnections();
  });
}

async function withDeadline(work: Promise<void>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([work.then(() => true), deadline]);
  } finally {
    clearTimeout(timer);
  }
}

function urlOf(server: http.Server): string {
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return `http://${host}:${address.port}`;
}
