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
import { createConsole } from './admin/console/create-console';
import { AuditTrail } from './audit/audit-trail';
import { DecisionMask } from './audit/recording/decision-mask';
import { PgDecisionQueryStore } from './audit/store/pg-decision-query-store';
import { PgShadowDisagreementStore } from './audit/store/pg-shadow-disagreement-store';
import { JwtAuthenticator } from './authn/jwt-authenticator';
import { EvaluationPlacement } from './authz/evaluation-placement';
import type { ToolchainOptions } from './authz/opa-toolchain';
import { PolicyExplainer } from './authz/policy-explainer';
import { setUpPolicies } from './authz/policy-setup';
import { RequestJudge } from './authz/request-judge';
import type { PortcullisConfig } from './config/config-schema';
import { createDatabase, migrateToLatest, migrationConfig } from './db/database';
import { EmbeddedDatabase } from './db/embedded-database';
import { createDirectoryCaches } from './directory/directory-caches';
import { PgGrantDirectory } from './directory/pg-grant-directory';
import { createGatewayApp, type GatewayMiddleware } from './gateway/gateway-app';
import { createExpressServer } from './http/express-server';
import { ConfigError } from './base/errors';
import { RequestPipeline } from './gateway/request-pipeline';
import { HttpProxyForwarder } from './proxy/forwarder';
import { IdentityAssertionSigner } from './proxy/identity-assertion';
import { defaultRoutes } from './routes/default-routes';
import { RouteTable } from './routes/route-table';

export interface RuntimeOptions {
  logger: Logger;
  /** Folder for the embedded database and compiled policies (`.portcullis/` beside the config). */
  stateDir: string;
  toolchain: ToolchainOptions;
  /** The wall clock (epoch ms; tests move it): requests' time for the policy, and the minutes audit.unauthenticated_per_minute counts. Default Date.now. */
  now?: (() => number) | undefined;
  /**
   * false: no gateway port is served; the caller mounts `middleware` in an app of its own (the
   * library API, `createPortcullis`). Default true (`portcullis serve`).
   */
  serveGateway?: boolean;
}

/** One part of shutting down; `deadline` (epoch ms) is when the whole shutdown must be over. */
type ShutdownStep = (deadline: number) => Promise<void> | void;

export class Portcullis {
  private closing: Promise<void> | undefined;

  private constructor(
    /** Authorize, record, forward: what the gateway port serves, and what an app of the caller's mounts. */
    readonly middleware: GatewayMiddleware,
    private readonly gateway: http.Server | undefined,
    private readonly admin: http.Server,
    private readonly shutdownSteps: ShutdownStep[],
    private readonly shutdownGraceMs: number,
    readonly logger: Logger,
  ) {}

  get gatewayUrl(): string {
    if (!this.gateway) throw new Error('this Portcullis serves no gateway port: its middleware is mounted in an app of your own');
    return urlOf(this.gateway);
  }

  get adminUrl(): string {
    return urlOf(this.admin);
  }

  static async start(config: PortcullisConfig, options: RuntimeOptions): Promise<Portcullis> {
    const { logger } = options;
    const steps: ShutdownStep[] = [];
    const cleanUp = async () => {
      const deadline = Date.now() + config.server.shutdown_grace_ms;
      for (const step of steps.reverse()) await Promise.resolve(step(deadline)).catch(() => undefined);
    };
    try {
      const { db, requestDb, url: databaseUrl } = await openDatabase(config, options, steps);
      const policies = await setUpPolicies(config.policy, {
        buildDir: options.stateDir,
        toolchain: { ...options.toolchain, log: options.toolchain.log ?? ((line) => logger.info(line)) },
        logger,
        disagreements: new PgShadowDisagreementStore(db, { mask: new DecisionMask(config.audit.mask) }),
      });
      steps.push(() => policies.close());
      policies.watch();
      // Disabled caches: a verified token is never reused either.
      const authenticator = await JwtAuthenticator.create(config.auth, {
        logger,
        ...(config.cache.enabled ? { cacheMaxEntries: config.cache.max_entries } : { cacheTtlMs: 0 }),
      });
      steps.push(() => authenticator.close());
      const directory = await createDirectoryCaches({ config: config.cache, db: requestDb, url: databaseUrl, logger });
      steps.push(() => directory.close());
      const assertions = await IdentityAssertionSigner.create(config.assertion);
      if (!config.assertion.signing_key_file) {
        logger.warn(
          'assertion.signing_key_file is not set: identity assertions use a per-process key; set one when running several instances',
        );
      }

      const routes = routeTable(config, logger);
      const audit = await AuditTrail.start({
        db,
        config: config.audit,
        stateDir: options.stateDir,
        entrypoint: config.policy.entrypoint,
        logger,
        now: options.now,
      });
      const recorder = audit.recorder;
      steps.push(async (deadline) => {
        // The steps after this one (closing pools, stopping an embedded PostgreSQL) keep time of their own.
        const flushMs = deadline - Date.now() - Math.min(2_000, config.server.shutdown_grace_ms / 4);
        if (await withDeadline(audit.close(), flushMs)) return;
        const { spooled, lost } = await recorder.spoolUnwritten();
        if (lost > 0) {
          const why = config.audit.spool === 'none' ? 'there is no spool (audit.spool: none)' : 'the spool could not take them';
          logger.error(
            { lost },
            `decision records PostgreSQL had not taken by the shutdown deadline are lost (a write still in flight may yet store some): ${why}`,
          );
        } else if (spooled > 0) {
          logger.error(
            { spooled },
            'decision records PostgreSQL had not taken by the shutdown deadline were spooled; the next start writes them',
          );
        } else {
          logger.warn('the decision recorder had not closed by the shutdown deadline; it held no record');
        }
      });

      const placement = new EvaluationPlacement(config.policy.evaluation);
      const metrics = new GatewayMetrics({
        caches: { tokens: authenticator, ...directory.caches },
        auditBacklog: () => recorder.backlog,
        policyRevision: () => policies.policy.current.revision,
        policyPlacement: () => placement.placed(),
      });
      const forwarder = new HttpProxyForwarder({
        services: config.services,
        trustedProxies: config.server.trusted_proxies,
        timeoutMs: config.server.upstream_timeout_ms,
        bodyLimitBytes: config.server.body_limit_bytes,
        decodedBodyLimitBytes: config.server.decoded_body_limit_bytes,
        // Only the pipeline below forwards through it, so an upstream failure always finds it built.
        onError: (error, req, res) => pipeline.upstreamFailed(error, req, res),
      });
      steps.push(() => forwarder.close());
      const { subjects, facts, reader: directoryReader } = directory;
      const pipeline = new RequestPipeline({
        routes,
        authenticator,
        subjects,
        facts,
        directoryReader,
        policy: policies.policy,
        shadow: policies.shadow,
        // 401s limited per client address (audit.unauthenticated_per_minute).
        recorder: audit.requestRecorder,
        strictAudit: audit.strict,
        assertions,
        forwarder,
        logger,
        observer: metrics,
        bodyLimitBytes: config.server.body_limit_bytes,
        placement,
        now: options.now,
        afterWrite: () => directory.afterWrite(),
        catchingUp: () => directory.catchingUp(),
      });

      const requests = pipeline;
      const middleware: GatewayMiddleware = pipeline.handle;
      let gateway: http.Server | undefined;
      if (options.serveGateway ?? true) {
        // The same middleware a caller's own Express app mounts, with nothing in front of it.
        const server = createExpressServer(createGatewayApp(middleware), {
          headersTimeout: config.server.headers_timeout_ms,
          requestTimeout: config.server.request_timeout_ms,
          maxHeaderSize: config.server.max_header_bytes,
          keepAliveTimeout: 5_000,
          // How often Node checks the two timeouts above (its default, 30 s, would let slow clients linger).
          connectionsCheckingInterval: Math.min(1_000, config.server.headers_timeout_ms),
        });
        await listen(server, config.server.host, config.server.port);
        steps.push(() => drainGateway(server, requests, config.server.shutdown_grace_ms));
        gateway = server;
      } else {
        // The caller's server keeps accepting: the pipeline refuses what arrives from now on.
        steps.push(() => {
          requests.stop();
          return drain(requests, config.server.shutdown_grace_ms);
        });
      }

      const explainer = new PolicyExplainer({
        routes,
        judge: new RequestJudge({ subjects, facts, directoryReader, policy: policies.policy, shadow: policies.shadow, now: options.now }),
        policy: policies.policy,
        directory: new PgGrantDirectory(db),
        recorder,
      });
      const adminApp = createAdminApp({
        token: config.admin.token,
        jwks: () => assertions.jwks(),
        metrics: metrics.registry,
        policy: policies.policy,
        policyApi: createPolicyRouter({
          policy: policies.policy,
          shadow: policies.shadow,
          explainer,
          disagreements: new PgShadowDisagreementStore(db),
        }),
        console: createConsole({
          config: config.admin,
          db,
          policy: policies.policy,
          shadow: policies.shadow,
          explainer,
          backlog: () => audit.backlog,
          caches: { tokens: authenticator, ...directory.caches },
          routes: [...config.routes, ...defaultRoutes],
          entrypoint: config.policy.entrypoint,
          toolchain: options.toolchain,
        }),
        decisionApi: decisionRoutes({ decisions: new PgDecisionQueryStore(db), backlog: () => audit.backlog }),
        signingKeys: () => authenticator.keySetStatus(),
        pingDatabase: async () => {
          await db.raw('select 1').timeout(1000);
        },
      });
      const admin = createExpressServer(adminApp);
      await listen(admin, config.admin.host, config.admin.port);
      steps.push(() => closeNow(admin));

      const instance = new Portcullis(middleware, gateway, admin, steps, config.server.shutdown_grace_ms, logger);
      logger.info(
        { gateway: gateway ? instance.gatewayUrl : "mounted in the caller's app", admin: instance.adminUrl },
        'portcullis is ready',
      );
      return instance;
    } catch (error) {
      await cleanUp();
      throw error;
    }
  }

  /**
   * Shuts down within server.shutdown_grace_ms: stops accepting, drains the requests in flight,
   * cuts the rest, flushes or spools decision records, then closes the other parts. Every step
   * runs even when one before it failed or ran out of time; this never rejects.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      // The process's own exit comes after the last step.
      const deadline = Date.now() + this.shutdownGraceMs - Math.min(EXIT_RESERVE_MS, this.shutdownGraceMs / 10);
      for (const step of [...this.shutdownSteps].reverse()) {
        const run = Promise.resolve()
          .then(() => step(deadline))
          .catch((error: unknown) => this.logger.error({ err: error }, 'a shutdown step failed; going on with the next'));
        // Past the deadline each step still gets a moment: the embedded PostgreSQL must be stopped.
        if (!(await withDeadline(run, Math.max(deadline - Date.now(), MIN_STEP_MS)))) {
          this.logger.error('a shutdown step did not finish in time; going on with the next');
        }
      }
    })();
    return this.closing;
  }
}

async function openDatabase(
  config: PortcullisConfig,
  options: RuntimeOptions,
  steps: ShutdownStep[],
): Promise<{ db: Knex; requestDb: Knex; url: string }> {
  let url = config.database.url;
  if (!url) {
    const started = Date.now();
    const embedded = await EmbeddedDatabase.create({ dataDir: path.join(options.stateDir, 'pgdata') });
    steps.push(() => embedded.stop());
    options.logger.info(`embedded PostgreSQL ${embedded.initialised ? 'initialised and ' : ''}started in ${Date.now() - started} ms`);
    options.logger.warn(
      `database.url is not set: using the embedded PostgreSQL in ${path.join(options.stateDir, 'pgdata')}, which is for development (one machine, no backups); set database.url in production`,
    );
    url = embedded.url;
  }
  const warn = (message: string) => options.logger.warn({ component: 'knex' }, message);
  // Two pools: the request path's lookups are cut off at database.timeout_ms (a locked or
  // dead connection answers 503 instead of hanging); migrations, the decision writer and
  // the admin API run their statements for as long as they need.
  const db = createDatabase({ url, poolMax: 5, acquireTimeoutMs: config.database.timeout_ms, warn });
  steps.push(() => closePool(db));
  const requestDb = createDatabase({
    url,
    acquireTimeoutMs: config.database.timeout_ms,
    statementTimeoutMs: config.database.timeout_ms,
    warn,
  });
  steps.push(() => closePool(requestDb));
  if (!config.database.url) {
    await migrateToLatest(db);
  } else {
    const [, pending] = (await db.migrate.list(migrationConfig())) as [unknown[], unknown[]];
    if (pending.length > 0)
      throw new ConfigError(`the database has ${pending.length} pending migration(s): run \`portcullis migrate\` first`);
  }
  return { db, requestDb, url };
}

/** Default routes whose upstream service is not configured are dropped (so they answer 404), loudly. */
export function routeTable(config: PortcullisConfig, logger: Logger): RouteTable {
  const missing = new Set(defaultRoutes.map((route) => route.service).filter((service) => !(service in config.services)));
  for (const service of missing) logger.warn(`services.${service} is not configured: its default routes are disabled and answer 404`);
  const table = new RouteTable(
    config.routes,
    defaultRoutes.filter((route) => !missing.has(route.service)),
  );
  const unchecked = table.uncheckedParameters();
  if (unchecked.length > 0) {
    logger.warn(
      { unchecked },
      `route parameters forwarded unchecked (checked_by: upstream), the upstream must check them against the assertion's org claim: ${unchecked.join(', ')}`,
    );
  }
  return table;
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

/** Left of server.shutdown_grace_ms for the process to exit once every step is done. */
const EXIT_RESERVE_MS = 400;
/** What a shutdown step gets at least, even past the deadline. */
const MIN_STEP_MS = 100;
/** A pool whose statement is stuck (on a lock, say) is left to the process's exit after this. */
const POOL_CLOSE_MS = 500;
/** After the drain, how long the 503s sent to requests still waiting get before connections are cut. */
const CUT_MS = 500;

/**
 * Stops accepting; requests in flight get half the grace period to finish. Then those still
 * waiting for a decision are answered 503 and the responses still streaming are cut, each
 * recorded with what its client got, and every connection is closed.
 */
async function drainGateway(server: http.Server, pipeline: RequestPipeline, graceMs: number): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  await drain(pipeline, graceMs);
  server.closeAllConnections();
  await closed;
}

/** Requests in flight get half the grace period; then those still waiting are answered 503 and the responses still streaming are cut. */
async function drain(pipeline: RequestPipeline, graceMs: number): Promise<void> {
  if (!(await withDeadline(pipeline.whenIdle(), graceMs / 2))) {
    pipeline.cancelInFlight('the gateway is shutting down');
    await withDeadline(pipeline.whenIdle(), Math.min(CUT_MS, graceMs / 10));
  }
}

async function closePool(db: Knex): Promise<void> {
  await withDeadline(db.destroy(), POOL_CLOSE_MS);
}

/** The admin port has nothing worth waiting for: probes and queries are cut. */
function closeNow(server: http.Server): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeAllConnections();
  return closed;
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
