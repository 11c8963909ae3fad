// The zero-configuration demo behind `npm start`: an embedded PostgreSQL kept in the state
// folder, demo data, echo upstreams, a development identity provider, the shipped policies,
// and a gateway — then ready-to-paste curl commands, one per scenario.
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import path from 'node:path';
import { createDatabase, migrateToLatest } from '../db/database';
import { EmbeddedDatabase } from '../db/embedded-database';
import { Portcullis } from '../app';
import type { ToolchainOptions } from '../authz/opa-toolchain';
import { parseConfig } from '../config/load-config';
import { projectRoot } from '../project-root';
import type { Logger } from 'pino';
import { demoEmail, demoSubject, seedDemoData } from './demo-data';
import { DEV_AUDIENCE, DEV_ISSUER, ensureDevIdentity, type DevIdentity } from './dev-identity';
import { startEchoService, type EchoService } from './echo-service';

const SERVICES = ['organizations', 'projects', 'credentials', 'users'] as const;

export interface DemoOptions {
  stateDir: string;
  host: string;
  port: number;
  adminPort: number;
  logger: Logger;
  toolchain: ToolchainOptions;
  out: (line: string) => void;
}

export class Demo {
  private constructor(
    private readonly gateway: Portcullis,
    private readonly echoes: EchoService[],
    private readonly database: EmbeddedDatabase,
  ) {}

  static async start(options: DemoOptions): Promise<Demo> {
    const { out } = options;
    const started = Date.now();
    const step = async <T>(label: string, work: () => Promise<T>): Promise<T> => {
      const at = Date.now();
      out(`  ${label}…`);
      const result = await work();
      out(`  ${label}: done in ${((Date.now() - at) / 1000).toFixed(1)} s`);
      return result;
    };
    out(`Portcullis demo (state in ${path.relative(process.cwd(), options.stateDir) || options.stateDir})`);

    const database = await step('starting the embedded PostgreSQL (the first start initialises it)', () =>
      EmbeddedDatabase.create({ dataDir: path.join(options.stateDir, 'pgdata') }),
    );
    const echoes: EchoService[] = [];
    try {
      const db = createDatabase({ url: database.url });
      try {
        await step('migrating and loading demo data', async () => {
          await migrateToLatest(db);
          out((await seedDemoData(db)) ? '  demo data loaded' : '  demo data already present: kept as it is');
        });
      } finally {
        await db.destroy();
      }
      for (const name of SERVICES) echoes.push(await startEchoService(name));
      const identity = await ensureDevIdentity(options.stateDir);
      const adminToken = randomBytes(18).toString('base64url');
      const config = parseConfig(
        {
          server: { host: options.host, port: await availablePort(options.host, options.port) },
          admin: { host: options.host, port: await availablePort(options.host, options.adminPort), token: adminToken },
          database: { url: database.url },
          auth: { issuer: DEV_ISSUER, audience: DEV_AUDIENCE, jwks_file: identity.jwksFile, algorithms: ['ES256'] },
          policy: { source: path.join(projectRoot, 'policies') },
          assertion: { signing_key_file: identity.assertionKeyFile },
          services: Object.fromEntries(SERVICES.map((name, index) => [name, { url: echoes[index]!.url }])),
        },
        {},
        options.stateDir,
      );
      const gateway = await Portcullis.start(config, {
        logger: options.logger,
        stateDir: options.stateDir,
        toolchain: { ...options.toolchain, log: (line) => out(`  ${line}`) },
      });
      await printScenarios(out, gateway, identity, adminToken, Date.now() - started);
      return new Demo(gateway, echoes, database);
    } catch (error) {
      await Promise.all(echoes.map((echo) => echo.close()));
      await database.stop();
      throw error;
    }
  }

  /** Stops the gateway (flushing decision records), the echo services and PostgreSQL: PostgreSQL even when a step before fails. */
  async close(): Promise<void> {
    try {
      await this.gateway.close();
    } finally {
      try {
        await Promise.all(this.echoes.map((echo) => echo.close()));
      } finally {
        await this.database.stop();
      }
    }
  }
}

async function printScenarios(out: (line: string) => void, gateway: Portcullis, identity: DevIdentity, adminToken: string, elapsedMs: number) {
  const token = (user: string) => identity.mint(demoSubject(user), { email: demoEmail(user) });
  const url = gateway.gatewayUrl;
  out('');
  out(`Portcullis is ready in ${(elapsedMs / 1000).toFixed(1)} s: gateway ${url}, admin ${gateway.adminUrl}`);
  out('Tokens below are valid for 12 hours; mint more with `npx portcullis token --user alice`.');
  out('');
  out(`export ALICE='${await token('alice')}'`);
  out(`export BOB='${await token('bob')}'`);
  out(`export CAROL='${await token('carol')}'`);
  out(`export ADMIN_TOKEN='${adminToken}'`);
  out('');
  const scenarios: Array<[string, string]> = [
    ['alice (admin of acme) reads acme\'s projects: allowed, see the identity headers the upstream received', `curl -i ${url}/orgs/acme/projects -H "Authorization: Bearer $ALICE"`],
    ['alice deletes acme while it still has projects: 409 with the reason', `curl -i -X DELETE ${url}/orgs/acme -H "Authorization: Bearer $ALICE"`],
    ['bob (member of acme) reads globex: 403, organizations are isolated', `curl -i ${url}/orgs/globex -H "Authorization: Bearer $BOB"`],
    ['bob creates a project in acme: allowed by his team\'s role', `curl -i -X POST ${url}/orgs/acme/projects -H "Authorization: Bearer $BOB" -d '{"slug":"mobile"}'`],
    ['carol (no organization) creates one: allowed', `curl -i -X POST ${url}/orgs -H "Authorization: Bearer $CAROL" -d '{"slug":"carolco"}'`],
    ['carol reads her own profile: allowed', `curl -i ${url}/users/me -H "Authorization: Bearer $CAROL"`],
    ['no token at all: 401', `curl -i ${url}/orgs/acme`],
    ['the admin port: the policy that is serving', `curl -s ${gateway.adminUrl}/admin/v1/policy -H "Authorization: Bearer $ADMIN_TOKEN"`],
  ];
  for (const [title, command] of scenarios) {
    out(`# ${title}`);
    out(command);
    out('');
  }
  out('Press Ctrl-C to stop everything.');
}

/** The preferred port when free, else any free port (so a busy 8080 never stops the demo). */
function availablePort(host: string, preferred: number): Promise<number> {
  return new Promise((resolve) => {
    const probe = net.createServer();
    probe.once('error', () => resolve(0));
    probe.listen(preferred, host, () => probe.close(() => resolve(preferred)));
  });
}
