// A bounded soak with a fault: steady traffic through a real gateway while PostgreSQL is
// stopped and restarted. Afterwards every response must have its decision record, nothing
// outside the outage may have failed, and nothing during it may have been allowed without a
// recorded policy decision. Usage: npm run soak:fault -- --seconds 180 --outage-at 60 --outage 10
import http from 'node:http';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import pino from 'pino';
import { Portcullis } from '../src/app';
import { buildWasmBundle, resolveOpa } from '../src/authz/opa-toolchain';
import { parseConfig } from '../src/config/load-config';
import { createDatabase, migrateToLatest } from '../src/db/database';
import { freePort } from '../src/base/free-port';
import { EmbeddedDatabase } from '../src/db/embedded-database';
import { demoSubject, seedDemoData } from '../src/demo/demo-data';
import { startEchoService } from '../src/demo/echo-service';
import { projectRoot } from '../src/project-root';
import { arg, log } from './bench-environment';

interface Sample {
  at: number;
  status: number;
  decisionId: string | undefined;
}

const ISSUER = 'https://id.soak.portcullis';

async function main(): Promise<void> {
  const seconds = arg('seconds', 180);
  const outageAt = arg('outage-at', 60);
  const outageS = arg('outage', 10);
  const concurrency = arg('concurrency', 16);
  const dir = path.join(projectRoot, '.bench', 'soak-fault');
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });

  const port = await freePort();
  let database = await EmbeddedDatabase.create({ dataDir: path.join(dir, 'pgdata'), port });
  const seed = createDatabase({ url: database.url });
  await migrateToLatest(seed);
  await seedDemoData(seed);
  await seed.destroy();

  const opa = await resolveOpa({ opaBin: process.env.OPA_BIN, searchPath: process.env.PATH, log });
  const { output: bundle } = await buildWasmBundle({
    opa,
    source: path.join(projectRoot, 'policies'),
    entrypoints: ['portcullis/decision'],
    output: path.join(dir, 'bundle.tar.gz'),
  });
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  await writeFile(path.join(dir, 'jwks.json'), JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'soak', alg: 'ES256' }] }));
  const token = (user: string) =>
    new SignJWT({})
      .setProtectedHeader({ alg: 'ES256', kid: 'soak' })
      .setSubject(demoSubject(user))
      .setIssuer(ISSUER)
      .setAudience('portcullis')
      .setExpirationTime('2h')
      .sign(privateKey);

  const upstream = await startEchoService('all');
  const config = parseConfig(
    {
      server: { host: '127.0.0.1', port: 0 },
      admin: { host: '127.0.0.1', port: 0 },
      database: { url: database.url },
      auth: { issuer: ISSUER, audience: 'portcullis', jwks_file: 'jwks.json', algorithms: ['ES256'] },
      policy: { source: bundle },
      services: Object.fromEntries(['organizations', 'projects', 'credentials', 'users'].map((name) => [name, { url: upstream.url }])),
    },
    {},
    dir,
  );
  const gateway = await Portcullis.start(config, { logger: pino({ level: 'silent' }), stateDir: dir, toolchain: { opaBin: opa } });
  const requests = [
    ['GET', '/orgs/acme', await token('alice')],
    ['GET', '/orgs/acme/projects', await token('bob')],
    ['POST', '/orgs/acme/projects', await token('bob')],
    ['DELETE', '/orgs/acme', await token('alice')],
    ['GET', '/orgs/globex', await token('bob')],
    ['GET', '/users/me', await token('carol')],
  ] as const;

  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const { port: gatewayPort } = new URL(gateway.gatewayUrl);
  const samples: Sample[] = [];
  const started = Date.now();
  const until = started + seconds * 1000;
  let outage: { from: number; to: number } | undefined;
  const fault = (async () => {
    await new Promise((resolve) => setTimeout(resolve, outageAt * 1000));
    const from = Date.now();
    log(`stopping PostgreSQL at ${((from - started) / 1000).toFixed(1)} s`);
    await database.stop();
    await new Promise((resolve) => setTimeout(resolve, outageS * 1000));
    database = await EmbeddedDatabase.create({ dataDir: path.join(dir, 'pgdata'), port });
    outage = { from, to: Date.now() };
    log(`PostgreSQL back after ${((outage.to - from) / 1000).toFixed(1)} s`);
  })();
  const worker = async (index: number) => {
    for (let i = index; Date.now() < until; i += concurrency) {
      const [method, target, bearer] = requests[i % requests.length]!;
      samples.push(await send(Number(gatewayPort), agent, method, target, bearer));
    }
  };
  const progress = setInterval(() => log(`${samples.length} requests, ${((Date.now() - started) / 1000).toFixed(0)} s`), 15_000);
  await Promise.all(Array.from({ length: concurrency }, (_, index) => worker(index)));
  clearInterval(progress);
  await fault;
  agent.destroy();

  log('draining: waiting for every decision record to be written');
  await gateway.close();
  const check = createDatabase({ url: database.url });
  const ids = samples.map((sample) => sample.decisionId).filter((id): id is string => Boolean(id));
  const stored = new Map<string, boolean>();
  for (let i = 0; i < ids.length; i += 5000) {
    for (const row of await check('decisions')
      .whereIn('id', ids.slice(i, i + 5000))
      .select<{ id: string; allow: boolean }[]>('id', 'allow'))
      stored.set(row.id, row.allow);
  }
  await check.destroy();
  await database.stop();
  await upstream.close();

  const window = outage ?? { from: 0, to: 0 };
  const graceMs = 1000;
  const inOutage = (sample: Sample) => sample.at >= window.from && sample.at <= window.to + graceMs;
  const unavailable = (sample: Sample) => sample.status >= 500;
  const failedOutside = samples.filter((sample) => !inOutage(sample) && unavailable(sample));
  const allowedWithoutRecord = samples.filter(
    (sample) => sample.status < 300 && (!sample.decisionId || stored.get(sample.decisionId) !== true),
  );
  const missing = ids.filter((id) => !stored.has(id));
  const duringOutage = samples.filter(inOutage);
  const lines = [
    `duration ${seconds} s, ${concurrency} concurrent clients, PostgreSQL stopped at ${outageAt} s for ${((window.to - window.from) / 1000).toFixed(1)} s`,
    `requests sent ${samples.length}; responses with a decision id ${ids.length}; decision records found ${stored.size}; missing ${missing.length}`,
    `during the outage (+${graceMs} ms): ${duringOutage.length} requests, ${duringOutage.filter(unavailable).length} answered 503, ${duringOutage.filter((s) => s.status < 300).length} allowed (each with its record)`,
    `outside the outage: ${failedOutside.length} failed`,
    `allowed without a recorded allow decision: ${allowedWithoutRecord.length}`,
  ];
  for (const line of lines) process.stdout.write(`${line}\n`);
  const ok = missing.length === 0 && failedOutside.length === 0 && allowedWithoutRecord.length === 0 && ids.length === samples.length;
  process.stdout.write(ok ? 'PASS\n' : 'FAIL\n');
  process.exitCode = ok ? 0 : 1;
}

function send(port: number, agent: http.Agent, method: string, target: string, bearer: string): Promise<Sample> {
  return new Promise((resolve) => {
    const req = http.request(
      { host: '127.0.0.1', port, method, path: target, agent, headers: { authorization: `Bearer ${bearer}` } },
      (res) => {
        res.resume();
        res.on('end', () =>
          resolve({ at: Date.now(), status: res.statusCode ?? 0, decisionId: res.headers['x-portcullis-decision'] as string | undefined }),
        );
      },
    );
    req.on('error', () => resolve({ at: Date.now(), status: 0, decisionId: undefined }));
    req.end(method === 'POST' ? '{}' : undefined);
  });
}

main().catch((error: unknown) => {
  process.stderr.write(`soak failed: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exitCode = 1;
});
