// Three gateway processes and the directory service on one PostgreSQL, behind a real nginx
// running the config shipped in deploy/nginx/, with the instances configured from
// deploy/portcullis.yaml. Under load one gateway is killed with SIGKILL and started again; that
// one runs as the Kubernetes manifests run it (no spool, its chain named after its pod), the
// others as compose does (a spool in their state folder, generated ids).
// Run alone with `npm run test:cluster`; it prints the figures the README quotes.
import { generateKeyPairSync } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { projectRoot } from '../src/project-root';
import { requireBuild, runCli } from './support/cli-process';
import { seedDirectory, type Directory } from './support/directory-fixtures';
import { ensureNginx, startNginx, type NginxProcess } from './support/nginx-process';
import { deploymentPodName } from './support/pod-name';
import { freePort } from '../src/base/free-port';
import { startServiceProcess, type ServiceProcess } from './support/service-process';
import { createTestDatabase, type TestDatabase } from './support/test-database';
import { AUDIENCE, createTokenIssuer, ISSUER } from './support/token-issuer';
import { waitFor } from './support/wait-for';

const SHIPPED_CONFIG = path.join(projectRoot, 'deploy', 'portcullis.yaml');
const ADMIN_TOKEN = 'cluster-test-admin-token-0123456789';
const GATEWAYS = 3;
const POD_NAME = deploymentPodName('portcullis-gateway');
const CLIENTS = 12;
const READY = /portcullis is ready/;
/** Concurrent requests per instance while waiting for the membership change to be enforced. */
const POLLERS = 3;

interface Gateway {
  port: number;
  adminPort: number;
  configFile: string;
  stateDir: string;
  /** Its own environment, beside the one every process gets. */
  env: NodeJS.ProcessEnv;
  /** Unset until it has started once. */
  process?: ServiceProcess;
}

type Kind = 'read' | 'denied' | 'write';

/** A request pinned to one instance while the membership change propagates. */
interface Poll {
  instance: number;
  status: number;
  decisionId: string;
  /** Date.now() when the response arrived. */
  answeredAt: number;
}

interface Answer {
  kind: Kind;
  /** 0 when the client got no response at all. */
  status: number;
  decisionId: string | null;
  /** performance.now() when the response arrived. */
  at: number;
}

let dir: string;
let database: TestDatabase;
let directory: Directory;
let env: NodeJS.ProcessEnv;
let directoryService: ServiceProcess | undefined;
const gateways: Gateway[] = [];
let nginx: NginxProcess | undefined;

beforeAll(async () => {
  requireBuild();
  ensureNginx();
  dir = await mkdtemp(path.join(os.tmpdir(), 'portcullis-cluster-'));
  database = await createTestDatabase();
  directory = await seedDirectory(database.db);
  env = { DATABASE_URL: database.url, PORTCULLIS_ADMIN_TOKEN: ADMIN_TOKEN, LOG_LEVEL: 'info' };
}, 300_000); // a fresh machine installs nginx first

afterAll(async () => {
  await nginx?.stop();
  // Still running only when the test failed half-way.
  for (const gateway of gateways) gateway.process?.child.kill('SIGKILL');
  await directoryService?.stop();
  await database?.drop();
  await rm(dir, { recursive: true, force: true });
});

/** deploy/portcullis.yaml with loopback addresses, the test's identity provider, keys and policy bundle. */
async function instanceConfig(
  name: string,
  ports: { gateway: number; admin: number; directory: number },
  keys: { assertion: string; checkpoint: string },
  jwksFile: string,
) {
  const shipped = parseYaml(await readFile(SHIPPED_CONFIG, 'utf8')) as Record<string, Record<string, unknown>>;
  const directoryUrl = `http://127.0.0.1:${ports.directory}`;
  const config = {
    ...shipped,
    server: { ...shipped.server, host: '127.0.0.1', port: ports.gateway, trusted_proxies: ['127.0.0.1'] },
    admin: { ...shipped.admin, host: '127.0.0.1', port: ports.admin },
    auth: { issuer: ISSUER, audience: AUDIENCE, jwks_file: jwksFile, algorithms: ['ES256'] },
    policy: { ...shipped.policy, source: process.env.PORTCULLIS_TEST_BUNDLE },
    assertion: { ...shipped.assertion, signing_key_file: keys.assertion },
    audit: { ...shipped.audit, checkpoint_key_file: keys.checkpoint },
    directory: { ...shipped.directory, host: '127.0.0.1', port: ports.directory },
    services: Object.fromEntries(Object.keys(shipped.services!).map((service) => [service, { url: directoryUrl }])),
  };
  const file = path.join(dir, `${name}.yaml`);
  await writeFile(file, stringifyYaml(config));
  return file;
}

function startGateway(gateway: Omit<Gateway, 'process'>): Promise<ServiceProcess> {
  return startServiceProcess(['serve', '--config', gateway.configFile, '--state-dir', gateway.stateDir], { ...env, ...gateway.env }, READY);
}

/** Sum of portcullis_requests_total on an instance's /metrics: how many requests it has answered. */
async function requestsServed(gateway: Gateway): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${gateway.adminPort}/metrics`)).text();
  return text
    .split('\n')
    .filter((line) => line.startsWith('portcullis_requests_total{'))
    .reduce((sum, line) => sum + Number(line.split(' ').pop()), 0);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('three gateways behind nginx', () => {
  it('retries idempotent requests around a killed instance, loses no answered decision, enforces a membership change everywhere within 1 s, and every chain verifies', async () => {
    const keysDir = path.join(dir, 'keys');
    await mkdir(keysDir);
    const keys = { assertion: path.join(keysDir, 'assertion-key.pem'), checkpoint: path.join(keysDir, 'checkpoint-key.pem') };
    for (const file of Object.values(keys))
      await writeFile(file, generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }));
    const tokens = await createTokenIssuer(dir);
    const directoryPort = await freePort();

    for (let i = 1; i <= GATEWAYS; i += 1) {
      const ports = { gateway: await freePort(), admin: await freePort(), directory: directoryPort };
      const configFile = await instanceConfig(`gateway-${i}`, ports, keys, tokens.jwksFile);
      // The one killed below is a Kubernetes pod: deploy/kubernetes sets these two.
      const pod = i === 2 ? { PORTCULLIS_AUDIT_SPOOL: 'none', PORTCULLIS_INSTANCE_ID: POD_NAME } : {};
      gateways.push({ port: ports.gateway, adminPort: ports.admin, configFile, stateDir: path.join(dir, `state-${i}`), env: pod });
    }
    expect((parseYaml(await readFile(gateways[0]!.configFile, 'utf8')) as { audit: { mode: string } }).audit.mode).toBe('strict');
    directoryService = await startServiceProcess(
      ['directory', 'serve', '--config', gateways[0]!.configFile],
      env,
      /the directory service is ready/,
    );
    await Promise.all(gateways.map(async (gateway) => (gateway.process = await startGateway(gateway))));
    nginx = await startNginx({
      dir: path.join(dir, 'nginx'),
      upstreams: gateways.map((gateway) => `127.0.0.1:${gateway.port}`),
      port: await freePort(),
    });
    const balancer = nginx;

    const alice = { authorization: `Bearer ${await tokens.sign('alice|sub', {}, { expiresIn: '1h' })}` };
    const erin = { authorization: `Bearer ${await tokens.sign('erin|sub', {}, { expiresIn: '1h' })}` };
    const bob = { authorization: `Bearer ${await tokens.sign('bob|sub', {}, { expiresIn: '1h' })}` };

    // The load: reads alice may make, reads erin may not (403), and a few project creations (POST, not retried).
    const answers: Answer[] = [];
    let running = true;
    let sent = 0;
    const client = async () => {
      while (running) {
        const n = (sent += 1);
        const kind: Kind = n % 20 === 0 ? 'write' : n % 7 === 0 ? 'denied' : 'read';
        const init: RequestInit =
          kind === 'write'
            ? { method: 'POST', headers: { ...alice, 'content-type': 'application/json' }, body: JSON.stringify({ slug: `load-${n}` }) }
            : { headers: kind === 'denied' ? erin : alice };
        try {
          const res = await fetch(`${balancer.url}${kind === 'write' ? '/orgs/acme/projects' : '/orgs/acme'}`, init);
          await res.arrayBuffer();
          answers.push({ kind, status: res.status, decisionId: res.headers.get('x-portcullis-decision'), at: performance.now() });
        } catch {
          answers.push({ kind, status: 0, decisionId: null, at: performance.now() });
        }
      }
    };
    const started = performance.now();
    const load = Promise.all(Array.from({ length: CLIENTS }, client));

    // A membership change during the load, written with plain SQL as any service of the
    // directory may: bob leaves acme. Each instance is asked directly and continuously (by
    // POLLERS at once, so the samples are dense); the delay is from the deletion to the first
    // denial each instance decided (its record's time: the client's view also counts the
    // request's own latency, reported beside it).
    const direct = (gateway: Gateway, init: RequestInit) => fetch(`http://127.0.0.1:${gateway.port}/orgs/acme`, init);
    for (const gateway of gateways)
      await waitFor(async () => (await direct(gateway, { headers: bob })).status === 200, { what: 'bob to be served (a warm cache)' });
    await sleep(1_000);
    const polls: Poll[] = [];
    const enforced = Promise.all(
      gateways.flatMap((gateway, instance) =>
        Array.from({ length: POLLERS }, () =>
          waitFor(
            async () => {
              const res = await direct(gateway, { headers: bob });
              polls.push({ instance, status: res.status, decisionId: res.headers.get('x-portcullis-decision')!, answeredAt: Date.now() });
              return res.status !== 200;
            },
            { timeoutMs: 10_000, everyMs: 5, what: `gateway on port ${gateway.port} to deny bob` },
          ),
        ),
      ),
    );
    await sleep(200);
    // The change's moment is PostgreSQL's clock as it deletes the row (the same machine's clock,
    // just before the commit), not when this busy process got round to sending the statement.
    const { rows: change } = await database.db.raw<{ rows: { at: Date }[] }>(
      'delete from organization_members where organization_id = ? and user_id = ? returning clock_timestamp() as at',
      [directory.orgs.acme, directory.users.bob],
    );
    expect(change).toHaveLength(1);
    const changeAt = change[0]!.at.getTime();
    await enforced;

    // One instance dies without warning, and comes back on the same port and state folder.
    await sleep(1_500);
    const victim = gateways[1]!;
    const killed = victim.process!;
    killed.child.kill('SIGKILL');
    const killedAt = performance.now();
    expect(await killed.exited).toBe('SIGKILL');
    await sleep(3_000);
    victim.process = await startGateway(victim);
    const restartedAt = performance.now();
    expect((await direct(victim, { headers: bob })).status).toBe(403);
    // nginx sends it traffic again once its fail_timeout has passed.
    await waitFor(async () => (await requestsServed(victim)) > 5, {
      timeoutMs: 15_000,
      everyMs: 100,
      what: 'nginx to send the restarted gateway requests',
    });
    await sleep(1_500);
    running = false;
    await load;
    const loadSeconds = (performance.now() - started) / 1000;

    // Every instance stops cleanly, flushing what it holds.
    for (const gateway of gateways) expect(await gateway.process!.stop()).toBe(0);

    const idempotent = answers.filter((answer) => answer.kind !== 'write');
    const writes = answers.filter((answer) => answer.kind === 'write');
    const failedIdempotent = idempotent.filter((answer) => answer.status === 0 || answer.status >= 500);
    const withDecision = answers.filter((answer): answer is Answer & { decisionId: string } => answer.decisionId !== null);
    const stored = new Set<string>();
    for (let i = 0; i < withDecision.length; i += 5_000) {
      const ids = withDecision.slice(i, i + 5_000).map((answer) => answer.decisionId);
      const { rows } = await database.db.raw<{ rows: { id: string }[] }>('select id from decisions where id = any(?::uuid[])', [ids]);
      for (const row of rows) stored.add(row.id);
    }
    const missing = withDecision.filter((answer) => !stored.has(answer.decisionId));

    const decidedAt = new Map(
      (
        await database
          .db('decisions')
          .whereIn(
            'id',
            polls.map((poll) => poll.decisionId),
          )
          .select('id', 'time')
      ).map((row: { id: string; time: Date }) => [row.id, row.time.getTime()]),
    );
    const enforcement = gateways.map((_, instance) => {
      const mine = polls.filter((poll) => poll.instance === instance);
      const denied = mine.filter((poll) => poll.status !== 200);
      return {
        statuses: [...new Set(denied.map((poll) => poll.status))],
        decided: Math.min(...denied.map((poll) => decidedAt.get(poll.decisionId)!)) - changeAt,
        answered: Math.min(...denied.map((poll) => poll.answeredAt)) - changeAt,
      };
    });
    const missingAllowed = missing.filter((answer) => answer.kind !== 'denied');
    const verify = await runCli(['decisions', 'verify', '--config', gateways[0]!.configFile], env);
    const upstreamErrors = (await balancer.errorLog())
      .split('\n')
      .filter((line) => line.includes(`upstream: "http://127.0.0.1:${victim.port}`));

    const figures = {
      'load (s)': Number(loadSeconds.toFixed(1)),
      'requests answered': answers.length,
      'idempotent requests': idempotent.length,
      'idempotent 5xx or no response': failedIdempotent.length,
      'POSTs (not retried by design)': writes.length,
      'POSTs answered 5xx or not at all': writes.filter((answer) => answer.status === 0 || answer.status >= 500).length,
      'responses with a decision id': withDecision.length,
      'their records found': withDecision.length - missing.length,
      'missing records of allowed requests': missingAllowed.length,
      'missing records of denials': missing.length - missingAllowed.length,
      'membership change: first denial decided after (ms), per instance': enforcement.map((instance) => instance.decided),
      'membership change: first denial answered after (ms), per instance': enforcement.map((instance) => instance.answered),
      'nginx upstream errors on the killed instance (each retried or skipped)': upstreamErrors.length,
      'killed instance back after (s)': Number(((restartedAt - killedAt) / 1000).toFixed(1)),
      'decisions verify': verify.stdout.trim() || verify.stderr.trim(),
    };
    process.stderr.write(
      `cluster figures:\n${Object.entries(figures)
        .map(([name, value]) => `  ${name}: ${Array.isArray(value) ? value.join(', ') : value}`)
        .join('\n')}\n`,
    );

    expect(failedIdempotent).toEqual([]);
    for (const instance of enforcement) {
      expect(instance.statuses).toEqual([403]);
      expect(instance.decided).toBeLessThanOrEqual(1_000);
    }
    // audit.mode strict makes allows durable before forwarding and denials durable before they
    // are answered: no answer carrying a decision id may lack its record, kill or no kill.
    expect(missing).toEqual([]);
    expect(withDecision.length).toBeGreaterThan(answers.length * 0.95);
    expect(verify.code).toBe(0);
    // Its pod's chain, the same before and after the restart, and no spool left behind.
    expect(verify.stdout).toContain(`chain ${POD_NAME}: `);
    expect(existsSync(path.join(victim.stateDir, 'spool'))).toBe(false);
    expect(existsSync(path.join(gateways[0]!.stateDir, 'spool'))).toBe(true);
    // The kill was felt: nginx met the dead instance, and stepped around it.
    expect(upstreamErrors.length).toBeGreaterThan(0);
  }, 120_000);
});
