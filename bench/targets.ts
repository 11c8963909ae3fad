// The things the proxy benchmark compares, each started in its own process by
// bench/target-process.ts so that one's garbage collection or JIT never lands in another's
// measurement: (a) the upstream itself, (b) a plain Express 5 + http-proxy-middleware proxy and
// (g) the same on a server made as Portcullis makes its own, (c, d, f) Portcullis with caches on
// and off, (e) an Express gateway asking an OPA server.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import express from 'express';
import { createProxyMiddleware } from 'http-proxy-middleware';
import pino from 'pino';
import { Portcullis } from '../src/app';
import { JwtAuthenticator } from '../src/authn/jwt-authenticator';
import type { PolicyInput } from '../src/authz/policy-engine';
import type { EvaluationMode } from '../src/authz/evaluation-placement';
import { configSchema } from '../src/config/config-schema';
import { parseConfig } from '../src/config/load-config';
import { createDatabase } from '../src/db/database';
import { PgFactsLoader } from '../src/directory/pg-facts-loader';
import { PgSubjectLoader } from '../src/directory/pg-subject-loader';
import { createExpressServer } from '../src/http/express-server';
import { canonicalizeTarget } from '../src/http/normalize-path';
import { defaultRoutes } from '../src/routes/default-routes';
import { RouteTable } from '../src/routes/route-table';

export type TargetKind = 'upstream' | 'express-proxy' | 'express-proxy-classes' | 'portcullis' | 'opa-gateway';

/** What every target needs to know; set up once by the benchmark environment. */
export interface TargetSettings {
  upstreamUrl: string;
  databaseUrl: string;
  bundle: string;
  jwksFile: string;
  issuer: string;
  audience: string;
  stateDir: string;
  opaUrl: string;
  cache: boolean;
  /** policy.evaluation (Portcullis only); the product's default is auto. */
  evaluation: EvaluationMode;
}

export interface StartedTarget {
  url: string;
  close(): Promise<void>;
}

/** A small JSON answer, the same for every request: the upstream is never the bottleneck. */
const UPSTREAM_BODY = JSON.stringify({ ok: true, service: 'bench', items: [1, 2, 3] });

export async function startTarget(kind: TargetKind, settings: TargetSettings): Promise<StartedTarget> {
  switch (kind) {
    case 'upstream': {
      const server = http.createServer((req, res) => {
        req.resume();
        req.on('end', () => {
          res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(UPSTREAM_BODY) });
          res.end(UPSTREAM_BODY);
        });
      });
      server.keepAliveTimeout = 60_000;
      return listening(server);
    }
    case 'express-proxy':
    case 'express-proxy-classes': {
      // What a team would write without a gateway product: one proxy middleware, keep-alive upstream;
      // (g) on a server whose requests and responses are made with the app's prototypes, as Portcullis's.
      const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
      const app = express();
      app.use(createProxyMiddleware({ target: settings.upstreamUrl, changeOrigin: true, agent }));
      return listening(kind === 'express-proxy' ? http.createServer(app) : createExpressServer(app));
    }
    case 'portcullis': {
      const config = parseConfig(
        {
          server: { host: '127.0.0.1', port: 0 },
          admin: { host: '127.0.0.1', port: 0 },
          database: { url: settings.databaseUrl },
          auth: { issuer: settings.issuer, audience: settings.audience, jwks_file: settings.jwksFile, algorithms: ['ES256'] },
          policy: { source: settings.bundle, evaluation: settings.evaluation },
          cache: { enabled: settings.cache },
          services: Object.fromEntries(
            ['organizations', 'projects', 'credentials', 'users'].map((name) => [name, { url: settings.upstreamUrl }]),
          ),
        },
        {},
        settings.stateDir,
      );
      const gateway = await Portcullis.start(config, {
        logger: pino({ level: 'error' }),
        stateDir: path.join(settings.stateDir, `portcullis-${process.pid}`),
        toolchain: {},
      });
      return { url: gateway.gatewayUrl, close: () => gateway.close() };
    }
    case 'opa-gateway':
      return startOpaGateway(settings);
  }
}

/**
 * (e) The common design: an Express gateway that does what Portcullis with caches disabled
 * does before the decision (route match, JWT verification, subject and facts from
 * PostgreSQL, same policy input), then asks `opa run --server` over HTTP (keep-alive) and
 * forwards with http-proxy-middleware. It neither records decisions nor signs assertions.
 */
async function startOpaGateway(settings: TargetSettings): Promise<StartedTarget> {
  const db = createDatabase({ url: settings.databaseUrl });
  const authenticator = await JwtAuthenticator.create(
    configSchema.shape.auth.parse({
      issuer: settings.issuer,
      audience: settings.audience,
      jwks_file: settings.jwksFile,
      algorithms: ['ES256'],
    }),
    { cacheTtlMs: 0 },
  );
  const routes = new RouteTable([], defaultRoutes);
  const subjects = new PgSubjectLoader(db);
  const facts = new PgFactsLoader(db);
  const opaAgent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  const decisionUrl = new URL('/v1/data/portcullis/decision', settings.opaUrl);
  const proxy = createProxyMiddleware({
    target: settings.upstreamUrl,
    changeOrigin: true,
    agent: new http.Agent({ keepAlive: true, maxSockets: 256 }),
  });

  const app = express();
  app.use((req, res, next) => {
    const { path: canonical } = canonicalizeTarget(req.url);
    const match = routes.match(req.method, canonical);
    if (!match) {
      res.status(404).end();
      return;
    }
    authenticator
      .authenticate(req.headers.authorization)
      .then(async (principal) => {
        const [subject, resourceFacts] = await Promise.all([subjects.load(principal.sub), facts.load(match.resource, match.action)]);
        const input: PolicyInput = {
          request: { id: String(req.headers['x-request-id'] ?? ''), method: req.method, path: canonical, route: match.route },
          action: match.action,
          resource: match.resource,
          subject,
          facts: resourceFacts,
        };
        const answer = (await postJson(opaAgent, decisionUrl, { input })) as { result?: { allow?: boolean; status?: number } };
        if (answer.result?.allow === true) next();
        else res.status(answer.result?.status ?? 403).json({ denied: true });
      })
      .catch((error: unknown) => {
        reportOnce(error);
        if (!res.headersSent) res.status(500).end();
      });
  });
  app.use(proxy);
  const started = await listening(http.createServer(app));
  return {
    url: started.url,
    close: async () => {
      await started.close();
      await db.destroy();
    },
  };
}

/**
 * POSTs JSON on a keep-alive agent. A request sent on a reused connection that the server
 * closed meanwhile (its idle timeout racing the reuse) fails with ECONNRESET before anything
 * was read: it is sent once more on a fresh connection, as Node's documentation advises.
 */
function postJson(agent: http.Agent, url: URL, body: unknown, retried = false): Promise<unknown> {
  const payload = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          try {
            resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
          } catch (error) {
            reject(error instanceof Error ? error : new Error(String(error)));
          }
        });
        res.on('error', reject);
      },
    );
    req.on('error', (error: NodeJS.ErrnoException) => {
      if (!retried && req.reusedSocket && error.code === 'ECONNRESET') resolve(postJson(agent, url, body, true));
      else reject(error);
    });
    req.end(payload);
  });
}

const reported = new Set<string>();

/** The first failure of each kind, on stderr: a comparison target's 500 must say why. */
function reportOnce(error: unknown): void {
  const message = error instanceof Error ? error.message : String(error);
  if (reported.has(message)) return;
  reported.add(message);
  process.stderr.write(`[bench] (e) failed a request: ${message}\n`);
}

function listening(server: http.Server): Promise<StartedTarget> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      resolve({
        url: `http://127.0.0.1:${port}`,
        close: () =>
          new Promise((done) => {
            server.closeAllConnections();
            server.close(() => done());
          }),
      });
    });
  });
}
