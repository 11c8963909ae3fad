// `npm run bench:directory`: latency of the directory service through the gateway, warm. The
// directory service and the gateway run in their own processes (this file, forked with `serve`)
// on one embedded PostgreSQL holding the demo directory; this process drives them with real
// tokens, one request at a time and 8 at a time, and reads the service directly (with an
// assertion signed by the gateway's key) so the gateway's share shows. Writes its section of BENCHMARKS.md.
import { fork, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { parse as parseYaml } from 'yaml';
import { Portcullis } from '../src/app';
import { parseConfig } from '../src/config/load-config';
import { seedDemoData } from '../src/demo/demo-data';
import { importDirectory } from '../src/directory-service/directory-import';
import { ASSERTION_HEADER, type DirectoryServiceName } from '../src/directory-service/assertion-verifier';
import { DirectoryService } from '../src/directory-service/directory-service';
import { IdentityAssertionSigner } from '../src/proxy/identity-assertion';
import {
  arg,
  AUDIENCE,
  describeMachine,
  IMAGE_NODE_FLAGS,
  ISSUER,
  log,
  prepareEnvironment,
  writeBenchmarkSection,
} from './bench-environment';
import { percentile } from './load';

type Role = 'directory' | 'gateway';

interface ServeMessage {
  role: Role;
  config: Record<string, unknown>;
  dir: string;
  opa: string;
}

interface Call {
  label: string;
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string;
  expect: number;
}

interface Caller {
  subject: string;
  userId: string;
  token: string;
}

interface Workload {
  name: string;
  via: 'gateway' | 'direct';
  /** Requests one iteration makes, in order (the timer runs around each). */
  requestsPerIteration: number;
  iteration(caller: Caller, tag: string): Promise<Call[]>;
}

interface Row {
  label: string;
  via: string;
  concurrency: number;
  requests: number;
  p50: number;
  p99: number;
  rps: number;
  gatewayCpuUs: number;
  directoryCpuUs: number;
}

const CONCURRENCY = 8;
const ORG = 'acme';
/** Members of acme (organization-admin), one per connection, so concurrent writes never queue on one user's row. */
const BENCH_USERS = Array.from({ length: CONCURRENCY }, (_, i) => `bench|${i + 1}`);

// A forked child: the gateway or the directory service, answering {cpu} and {stop}.
async function serve(): Promise<void> {
  process.on('disconnect', () => process.exit(0));
  const message = await new Promise<ServeMessage>((resolve) => process.once('message', resolve));
  const config = parseConfig(message.config, {}, message.dir);
  const logger = pino({ level: 'error' });
  const server =
    message.role === 'directory'
      ? await DirectoryService.start(config, { logger })
      : await Portcullis.start(config, { logger, stateDir: path.join(message.dir, 'gateway'), toolchain: { opaBin: message.opa } });
  process.on('message', (next: { cpu?: true; stop?: true }) => {
    if (next.cpu) {
      const used = process.cpuUsage();
      process.send?.({ cpu: used.user + used.system });
    } else if (next.stop) {
      void server.close().finally(() => process.exit(0));
    }
  });
  process.send?.({ ready: server instanceof DirectoryService ? server.url : server.gatewayUrl });
}

interface Served {
  url: string;
  /** This process's CPU time so far, in µs. */
  cpu(): Promise<number>;
  stop(): Promise<void>;
}

async function startServed(message: ServeMessage): Promise<Served> {
  const child: ChildProcess = fork(__filename, ['serve'], {
    execArgv: [...IMAGE_NODE_FLAGS],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = await new Promise<string>((resolve, reject) => {
    child.once('message', (answer: { ready?: string }) =>
      answer.ready ? resolve(answer.ready) : reject(new Error(`${message.role}: unexpected ${JSON.stringify(answer)}`)),
    );
    child.once('exit', (code) => reject(new Error(`the ${message.role} exited with code ${code} before it was ready`)));
    child.send(message);
  });
  return {
    url,
    cpu: () =>
      new Promise((resolve) => {
        child.once('message', (answer: { cpu: number }) => resolve(answer.cpu));
        child.send({ cpu: true });
      }),
    async stop() {
      if (child.exitCode === null) child.send({ stop: true });
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

function send(agent: http.Agent, base: string, call: Call): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const headers =
      call.body === undefined
        ? call.headers
        : { ...call.headers, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(call.body)) };
    const req = http.request(new URL(call.path, base), { method: call.method, agent, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(call.body);
  });
}

let runs = 0;

/** `iterations` iterations on `concurrency` keep-alive connections (caller i on connection i); latencies per label, sorted. */
async function run(base: string, workload: Workload, callers: readonly Caller[], concurrency: number, iterations: number) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const latencies = new Map<string, number[]>();
  const runId = (runs += 1);
  let next = 0;
  const started = performance.now();
  await Promise.all(
    callers.slice(0, concurrency).map(async (caller, worker) => {
      while (next < iterations) {
        const n = (next += 1);
        for (const call of await workload.iteration(caller, `${runId}-${worker}-${n}`)) {
          const at = performance.now();
          const answer = await send(agent, base, call);
          const ms = performance.now() - at;
          if (answer.status !== call.expect)
            throw new Error(`${call.method} ${call.path}: ${answer.status} (expected ${call.expect}): ${answer.body.slice(0, 300)}`);
          const list = latencies.get(call.label) ?? [];
          list.push(ms);
          latencies.set(call.label, list);
        }
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  agent.destroy();
  for (const list of latencies.values()) list.sort((a, b) => a - b);
  return { latencies, rps: (iterations * workload.requestsPerIteration) / seconds };
}

async function main(): Promise<void> {
  const requests = { 1: arg('requests', 1_000), [CONCURRENCY]: arg('concurrent-requests', 4_000) } as Record<number, number>;
  const loadBefore = os.loadavg();
  log(`load average before the run: ${loadBefore.map((n) => n.toFixed(2)).join(', ')}`);
  const env = await prepareEnvironment('directory');
  const processes: Served[] = [];
  try {
    await seedDemoData(env.db);
    await importDirectory(
      env.db,
      parseYaml(`
users:
${BENCH_USERS.map((subject, i) => `  - { subject: "${subject}", email: bench-${i + 1}@example.com, email_verified: true, display_name: Bench ${i + 1} }`).join('\n')}
organizations:
  - slug: ${ORG}
    name: Acme Corporation
    members:
${BENCH_USERS.map((subject) => `      - { user: "${subject}", role: organization-admin }`).join('\n')}
`),
    );
    const ids = new Map(
      (await env.db('users').whereIn('subject', BENCH_USERS).select('id', 'subject')).map((row: { id: string; subject: string }) => [
        row.subject,
        row.id,
      ]),
    );
    const callers: Caller[] = await Promise.all(
      BENCH_USERS.map(async (subject) => ({ subject, userId: ids.get(subject)!, token: await env.sign(subject) })),
    );

    const signingKeyFile = path.join(env.dir, 'assertion-key.pem');
    await writeFile(signingKeyFile, generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    // One configuration for both, as in the demo: the directory service's (no services), then the gateway's.
    const settings = (services: Record<string, { url: string }>) => ({
      server: { host: '127.0.0.1', port: 0 },
      admin: { host: '127.0.0.1', port: 0 },
      database: { url: env.databaseUrl },
      auth: { issuer: ISSUER, audience: AUDIENCE, jwks_file: env.jwksFile, algorithms: ['ES256'] },
      policy: { source: env.bundle },
      assertion: { signing_key_file: signingKeyFile },
      directory: { host: '127.0.0.1', port: 0 },
      services,
    });
    const directory = await startServed({ role: 'directory', config: settings({}), dir: env.dir, opa: env.opa });
    processes.push(directory);
    const services = Object.fromEntries(['organizations', 'users', 'projects'].map((name) => [name, { url: directory.url }]));
    const gateway = await startServed({
      role: 'gateway',
      config: settings({ ...services, credentials: { url: 'http://127.0.0.1:9' } }),
      dir: env.dir,
      opa: env.opa,
    });
    processes.push(gateway);
    log(`directory service ${directory.url}, gateway ${gateway.url}`);

    // What the gateway sends the service: its signer, on its key (reused for half the assertion's lifetime, as the gateway does).
    const signer = await IdentityAssertionSigner.create(parseConfig(settings({}), {}, env.dir).assertion);
    const asGateway = async (caller: Caller, service: DirectoryServiceName, org: string | null) => ({
      [ASSERTION_HEADER]: await signer.assertionFor({ userId: caller.userId, sub: caller.subject, org, service }),
    });
    const bearer = (caller: Caller) => ({ authorization: `Bearer ${caller.token}` });
    const read = (path: string, via: Workload['via'], service: DirectoryServiceName, org: string | null): Workload => ({
      name: `GET ${path}`,
      via,
      requestsPerIteration: 1,
      iteration: async (caller) => [
        {
          label: `GET ${path}`,
          method: 'GET',
          path,
          headers: via === 'gateway' ? bearer(caller) : await asGateway(caller, service, org),
          expect: 200,
        },
      ],
    });
    const workloads: Workload[] = [
      read(`/orgs/${ORG}`, 'gateway', 'organizations', ORG),
      read(`/orgs/${ORG}`, 'direct', 'organizations', ORG),
      read('/users/me', 'gateway', 'users', null),
      read('/users/me', 'direct', 'users', null),
      {
        name: 'PATCH /users/me',
        via: 'gateway',
        requestsPerIteration: 1,
        iteration: (caller, tag) =>
          Promise.resolve([
            {
              label: 'PATCH /users/me',
              method: 'PATCH',
              path: '/users/me',
              headers: bearer(caller),
              body: JSON.stringify({ display_name: `Bench ${tag}` }),
              expect: 200,
            },
          ]),
      },
      {
        name: 'POST + DELETE a project',
        via: 'gateway',
        requestsPerIteration: 2,
        iteration: (caller, tag) =>
          Promise.resolve([
            {
              label: `POST /orgs/${ORG}/projects`,
              method: 'POST',
              path: `/orgs/${ORG}/projects`,
              headers: bearer(caller),
              body: JSON.stringify({ slug: `b-${tag}`, name: `Bench ${tag}` }),
              expect: 201,
            },
            {
              label: `DELETE /orgs/${ORG}/projects/{project}`,
              method: 'DELETE',
              path: `/orgs/${ORG}/projects/b-${tag}`,
              headers: bearer(caller),
              expect: 204,
            },
          ]),
      },
    ];

    const rows: Row[] = [];
    const started = Date.now();
    for (const workload of workloads) {
      for (const concurrency of [1, CONCURRENCY]) {
        const base = workload.via === 'gateway' ? gateway.url : directory.url;
        const iterations = Math.round(requests[concurrency]! / workload.requestsPerIteration);
        // Warm-up: JIT, connections, the gateway's subject and facts caches, PostgreSQL's buffers.
        await run(base, workload, callers, concurrency, Math.max(100, Math.round(iterations / 5)));
        const [gatewayCpu, directoryCpu] = await Promise.all([gateway.cpu(), directory.cpu()]);
        const measured = await run(base, workload, callers, concurrency, iterations);
        const [gatewayCpuAfter, directoryCpuAfter] = await Promise.all([gateway.cpu(), directory.cpu()]);
        const total = iterations * workload.requestsPerIteration;
        for (const [label, sorted] of measured.latencies) {
          const row: Row = {
            label,
            via: workload.via === 'gateway' ? 'gateway → service' : 'service directly',
            concurrency,
            requests: sorted.length,
            p50: percentile(sorted, 0.5),
            p99: percentile(sorted, 0.99),
            rps: measured.rps,
            gatewayCpuUs: (gatewayCpuAfter - gatewayCpu) / total,
            directoryCpuUs: (directoryCpuAfter - directoryCpu) / total,
          };
          rows.push(row);
          log(
            `${row.label} via ${row.via}, ${concurrency} in flight: p50 ${row.p50.toFixed(2)} ms, p99 ${row.p99.toFixed(2)} ms, ${row.rps.toFixed(0)} req/s`,
          );
        }
      }
    }
    const seconds = (Date.now() - started) / 1000;

    const lines = [
      '## Directory service through the gateway (`npm run bench:directory`)',
      '',
      ...(await describeMachine(env.db)),
      `- load average before the run: ${loadBefore.map((n) => n.toFixed(2)).join(', ')}`,
      `- setup: the demo directory (\`importDirectory\`) plus ${BENCH_USERS.length} organization-admins of ${ORG}; the directory service and the gateway (caches on, audit \`async\`, Ed25519 assertion key) each in their own Node process on one embedded PostgreSQL; this process is the client, over keep-alive connections, with real ES256 tokens`,
      `- each row: a warm-up of the same requests first (a fifth as many, at least 100), then ${requests[1]!.toLocaleString('en')} requests one at a time, or ${requests[CONCURRENCY]!.toLocaleString('en')} with ${CONCURRENCY} in flight (connection i always calls as user i); measured in ${seconds.toFixed(0)} s`,
      '- "service directly" sends the same read to the directory service with an assertion signed by the gateway\'s key (the gateway\'s own signer, reused for half its lifetime as the gateway reuses it): the difference is what the gateway adds',
      "- `PATCH /users/me` changes `display_name`, without `If-Match`; each commit also evicts that user from the gateway's caches (change notification), so the next request reloads them. The project pair creates a project and deletes it; req/s counts both requests",
      "- CPU µs/req: each process's user + system CPU time over the measured requests, divided by their number",
      '',
      '| request | via | in flight | requests | p50 ms | p99 ms | req/s | gateway CPU µs/req | service CPU µs/req |',
      '|---|---|---|---|---|---|---|---|---|',
      ...rows.map(
        (row) =>
          `| \`${row.label}\` | ${row.via} | ${row.concurrency} | ${row.requests.toLocaleString('en')} | ${row.p50.toFixed(2)} | ${row.p99.toFixed(2)} | ${row.rps.toFixed(0)} | ${row.via === 'service directly' ? '–' : row.gatewayCpuUs.toFixed(0)} | ${row.directoryCpuUs.toFixed(0)} |`,
      ),
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
    await writeBenchmarkSection('bench:directory', lines);
  } finally {
    for (const served of processes.reverse()) await served.stop();
    await env.close();
  }
}

if (process.argv[2] === 'serve') {
  serve().catch((error: unknown) => {
    log(`serve failed: ${(error as Error).stack ?? String(error)}`);
    process.exit(1);
  });
} else {
  main().catch((error: unknown) => {
    log(`failed: ${(error as Error).stack ?? String(error)}`);
    process.exit(1);
  });
}
