// The zero-configuration demo behind `npm start`: an embedded PostgreSQL kept in the state
// folder, demo data, the directory service (organizations, users, projects) and an echo
// upstream for credentials, a development identity provider, the shipped policies, and a
// gateway — then ready-to-paste curl commands, one per scenario, and a story to paste in order.
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import path from 'node:path';
import { createDatabase, migrateToLatest } from '../db/database';
import { EmbeddedDatabase } from '../db/embedded-database';
import { Portcullis } from '../app';
import type { ToolchainOptions } from '../authz/opa-toolchain';
import type { PortcullisConfig } from '../config/config-schema';
import { parseConfig } from '../config/load-config';
import { CheckpointSigner } from '../audit/chain/checkpoint-key';
import { DirectoryService } from '../directory-service/directory-service';
import { projectRoot } from '../project-root';
import type { Logger } from 'pino';
import { writeDemoAdminAccess, removeDemoAdminAccess } from './demo-admin-access';
import { DEMO_USERS, demoClaims, demoSubject, seedDemoData } from './demo-data';
import { DEV_AUDIENCE, DEV_ISSUER, ensureDevIdentity, type DevIdentity } from './dev-identity';
import { startEchoService, type EchoService } from './echo-service';

/** Served by the directory service; the credentials registry stays an echo upstream. */
const DIRECTORY_SERVICES = ['organizations', 'projects', 'users'] as const;
const ECHO_SERVICES = ['credentials'] as const;

export interface DemoOptions {
  stateDir: string;
  host: string;
  port: number;
  adminPort: number;
  logger: Logger;
  toolchain: ToolchainOptions;
  out: (line: string) => void;
  /** A candidate policy (policy.shadow.source) judged beside the shipped one and never enforced. */
  shadow?: string | undefined;
}

export class Demo {
  private constructor(
    private readonly gateway: Portcullis,
    private readonly directory: DirectoryService,
    private readonly echoes: EchoService[],
    private readonly database: EmbeddedDatabase,
    private readonly stateDir: string,
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
    let directory: DirectoryService | undefined;
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
      for (const name of ECHO_SERVICES) echoes.push(await startEchoService(name));
      const identity = await ensureDevIdentity(options.stateDir);
      // The demo's checkpoint key is made here on purpose, like its development identity, so the
      // production warning about a generated key (audit.checkpoint_key_file unset) stays quiet.
      const checkpointKey = path.join(options.stateDir, 'checkpoint-key.pem');
      await CheckpointSigner.open(undefined, options.stateDir);
      const adminToken = randomBytes(18).toString('base64url');
      const [gatewayPort, adminPort] = [
        await availablePort(options.host, options.port),
        await availablePort(options.host, options.adminPort),
      ];
      // One configuration for both: the directory service's (no services) and then the gateway's.
      const settings = (services: Record<string, { url: string }>): PortcullisConfig =>
        parseConfig(
          {
            server: { host: options.host, port: gatewayPort },
            admin: { host: options.host, port: adminPort, token: adminToken },
            database: { url: database.url },
            auth: { issuer: DEV_ISSUER, audience: DEV_AUDIENCE, jwks_file: identity.jwksFile, algorithms: ['ES256'] },
            policy: { source: path.join(projectRoot, 'policies'), ...(options.shadow ? { shadow: { source: options.shadow } } : {}) },
            // The directory service verifies the gateway's assertions with this key's public half.
            assertion: { signing_key_file: identity.assertionKeyFile },
            audit: { checkpoint_key_file: checkpointKey },
            directory: { host: options.host, port: 0 },
            services,
          },
          {},
          options.stateDir,
        );
      directory = await step('starting the directory service', () => DirectoryService.start(settings({}), { logger: options.logger }));
      const directoryUrl = directory.url;
      const config = settings({
        ...Object.fromEntries(DIRECTORY_SERVICES.map((name) => [name, { url: directoryUrl }])),
        ...Object.fromEntries(ECHO_SERVICES.map((name, index) => [name, { url: echoes[index]!.url }])),
      });
      const gateway = await Portcullis.start(config, {
        logger: options.logger,
        stateDir: options.stateDir,
        toolchain: { ...options.toolchain, log: (line) => out(`  ${line}`) },
      });
      // `portcullis explain` without a config file finds the admin API here.
      await writeDemoAdminAccess(options.stateDir, { url: gateway.adminUrl, token: adminToken, pid: process.pid });
      await printScenarios(out, gateway, identity, adminToken, Date.now() - started);
      return new Demo(gateway, directory, echoes, database, options.stateDir);
    } catch (error) {
      await directory?.close();
      await Promise.all(echoes.map((echo) => echo.close()));
      await database.stop();
      throw error;
    }
  }

  /**
   * Stops the gateway (flushing decision records), then the directory service and the echo
   * service, then PostgreSQL: PostgreSQL even when a step before fails.
   */
  async close(): Promise<void> {
    try {
      await removeDemoAdminAccess(this.stateDir);
      await this.gateway.close();
    } finally {
      try {
        await Promise.all([this.directory.close(), ...this.echoes.map((echo) => echo.close())]);
      } finally {
        await this.database.stop();
      }
    }
  }
}

async function printScenarios(
  out: (line: string) => void,
  gateway: Portcullis,
  identity: DevIdentity,
  adminToken: string,
  elapsedMs: number,
) {
  const token = (user: string) => identity.mint(demoSubject(user), demoClaims(user));
  const url = gateway.gatewayUrl;
  const as = (user: string) => `-H "Authorization: Bearer $${user.toUpperCase()}"`;
  const json = (body: string) => `-H 'content-type: application/json' -d '${body}'`;
  out('');
  out(`Portcullis is ready in ${(elapsedMs / 1000).toFixed(1)} s: gateway ${url}, admin ${gateway.adminUrl}`);
  out('Tokens below are valid for 12 hours; mint more with `npx portcullis token --user alice`.');
  out('');
  for (const user of ['alice', 'bob', 'carol', 'dave']) out(`export ${user.toUpperCase()}='${await token(user)}'`);
  out(`export ADMIN_TOKEN='${adminToken}'`);
  out('');
  // The subjects `explain --as` and `decisions --user` take.
  out(`Demo users and their token sub: ${DEMO_USERS.map((user) => `${user} = ${demoSubject(user)}`).join(', ')}`);
  out(`(why a request is allowed or denied: npx portcullis explain --as '${demoSubject('bob')}' DELETE /orgs/acme/projects/web)`);
  out('');
  const scenarios: Array<[string, string]> = [
    [
      "alice (admin of acme) reads acme's projects: allowed, served by the directory service",
      `curl -i ${url}/orgs/acme/projects ${as('alice')}`,
    ],
    [
      "alice reads acme's credentials: allowed, see the identity headers the upstream (an echo service) received",
      `curl -i ${url}/orgs/acme/credentials ${as('alice')}`,
    ],
    ['alice deletes acme while it still has projects: 409 with the reason', `curl -i -X DELETE ${url}/orgs/acme ${as('alice')}`],
    ['bob (member of acme) reads globex: 403, organizations are isolated', `curl -i ${url}/orgs/globex ${as('bob')}`],
    [
      "bob creates a project in acme: allowed by his team's role (201)",
      `curl -i -X POST ${url}/orgs/acme/projects ${as('bob')} ${json('{"slug":"mobile","name":"Mobile app"}')}`,
    ],
    ['carol has a valid token but no user yet: 403, register first', `curl -i ${url}/users/me ${as('carol')}`],
    ['no token at all: 401', `curl -i ${url}/orgs/acme`],
    ['the admin port: the policy that is serving', `curl -s ${gateway.adminUrl}/admin/v1/policy -H "Authorization: Bearer $ADMIN_TOKEN"`],
  ];
  for (const [title, command] of scenarios) {
    out(`# ${title}`);
    out(command);
    out('');
  }
  // Commands of one shell session: the invitation's id is kept in $INVITATION for dave.
  const story: Array<[string, string]> = [
    [
      "carol registers from her token's claims (201), creates carolco (201) and reads it (200)",
      `curl -i -X PUT ${url}/users/me ${as('carol')}`,
    ],
    ['', `curl -i -X POST ${url}/orgs ${as('carol')} ${json('{"slug":"carolco","name":"Carol Co"}')}`],
    ['', `curl -i ${url}/orgs/carolco ${as('carol')}`],
    ['dave is not in acme yet (403); alice invites his verified address (201)', `curl -i ${url}/orgs/acme ${as('dave')}`],
    [
      '',
      `INVITATION=$(curl -s -w '%{stderr}HTTP/1.1 %{http_code}: the invitation id is kept in $INVITATION\\n' -X POST ${url}/orgs/acme/invitations ${as('alice')} ${json('{"email":"dave@example.com"}')} | node -pe 'JSON.parse(require("fs").readFileSync(0, "utf8")).id')`,
    ],
    ['dave accepts (201) and now reads acme (200)', `curl -i -X POST ${url}/invitations/$INVITATION/accept ${as('dave')}`],
    ['', `curl -i ${url}/orgs/acme ${as('dave')}`],
    [
      'bob may not delete projects (403); alice attaches the role project-admin to his team builders (201); the very next request of bob is allowed (204)',
      `curl -i -X DELETE ${url}/orgs/acme/projects/web ${as('bob')}`,
    ],
    ['', `curl -i -X PUT ${url}/orgs/acme/teams/builders/roles/project-admin ${as('alice')}`],
    ['', `curl -i -X DELETE ${url}/orgs/acme/projects/web ${as('bob')}`],
    [
      'alice tries to delete acme: 409 naming its projects; she deletes them (204 each), then acme (204)',
      `curl -i -X DELETE ${url}/orgs/acme ${as('alice')}`,
    ],
    ['', `curl -i -X DELETE ${url}/orgs/acme/projects/api ${as('alice')}`],
    ['', `curl -i -X DELETE ${url}/orgs/acme/projects/mobile ${as('alice')}`],
    ['', `curl -i -X DELETE ${url}/orgs/acme ${as('alice')}`],
  ];
  out('The story: paste these in order, in one shell (it changes the demo data; remove .portcullis/ to start afresh).');
  out('');
  for (const [title, command] of story) {
    if (title !== '') out(`# ${title}`);
    out(command);
  }
  out('');
  out(`The operator console: ${gateway.adminUrl}/console/ (sign in with $ADMIN_TOKEN).`);
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
