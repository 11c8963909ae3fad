// `npm run soak`: one million requests through Portcullis with warm caches (autocannon, 32
// connections, in chunks of 100,000), the gateway's memory after every chunk, then stop.
// Bounded by construction: it sends exactly --requests requests (default 1,000,000).
import { organizationOf, seedBenchDirectory, type DirectorySize } from './bench-directory';
import {
  arg,
  describeMachine,
  log,
  prepareEnvironment,
  startTargetProcess,
  targetSettings,
  writeBenchmarkSection,
} from './bench-environment';
import { drive, type LoadRequest } from './load';

const SIZE: DirectorySize = {
  users: 1000,
  organizations: 100,
  membershipsPerUser: 3,
  projectsPerOrganization: 10,
  teamsPerOrganization: 2,
};

async function main(): Promise<void> {
  const total = arg('requests', 1_000_000);
  const chunk = arg('chunk', 100_000);
  const connections = arg('connections', 32);
  const started = Date.now();
  const env = await prepareEnvironment('soak');
  await seedBenchDirectory(env.db, SIZE, log);
  const requests: LoadRequest[] = [];
  for (let user = 1; user <= 200; user += 1) {
    requests.push({
      method: 'GET',
      path: `/orgs/org-${organizationOf(SIZE, user, 1)}/projects/project-${(user % SIZE.projectsPerOrganization) + 1}`,
      headers: { authorization: `Bearer ${await env.sign(`user-${user}`)}` },
    });
  }
  const upstream = await startTargetProcess('upstream', targetSettings(env, { upstreamUrl: '' }));
  const gateway = await startTargetProcess('portcullis', targetSettings(env, { upstreamUrl: upstream.url, cache: true }), ['--expose-gc']);
  const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(1);
  const rows: string[] = [];
  const rssAt = new Map<number, number>();
  const heapAt = new Map<number, number>();
  let sent = 0;
  let failed = 0;
  while (sent < total) {
    const amount = Math.min(chunk, total - sent);
    const result = await drive(gateway.url, requests, { connections, amount });
    sent += amount;
    failed += result.failed;
    const memory = await gateway.memory();
    rssAt.set(sent, memory.rss);
    heapAt.set(sent, memory.heapUsed);
    rows.push(
      `| ${sent.toLocaleString('en')} | ${Math.round(result.rps)} | ${result.p99.toFixed(2)} | ${mib(memory.rssBeforeGc)} | ${mib(memory.rss)} | ${mib(memory.heapUsed)} | ${mib(memory.external)} |`,
    );
    log(rows[rows.length - 1]!);
  }
  const first = Math.min(2 * chunk, total);
  const change = percentChange(rssAt, first, total);
  const heapChange = percentChange(heapAt, first, total);
  const signed = (percent: number) => `${percent >= 0 ? '+' : ''}${percent.toFixed(1)} %`;
  const rssValues = [...rssAt].filter(([at]) => at >= first).map(([, rss]) => rss);
  const decisions = (await env.db('decisions').count<{ count: string }[]>('* as count'))[0]?.count;
  const lines = [
    '## Soak (`npm run soak`)',
    '',
    ...(await describeMachine(env.db)),
    `- ${total.toLocaleString('en')} requests to Portcullis (caches warm, every decision recorded), autocannon with ${connections} connections in chunks of ${chunk.toLocaleString('en')}; ` +
      `${failed} answered other than 2xx; ${Number(decisions).toLocaleString('en')} decision records in PostgreSQL at the end; ${Math.round((Date.now() - started) / 1000)} s in all`,
    '- memory of the gateway process after each chunk: RSS as found, then RSS, heap and external memory after a full garbage collection',
    '',
    '| requests | req/s | p99 ms | RSS MiB | RSS after GC MiB | heap MiB | external MiB |',
    '|---|---|---|---|---|---|---|',
    ...rows,
    '',
    `Target: RSS flat within 10 % from ${first.toLocaleString('en')} to ${total.toLocaleString('en')} requests (after GC): ` +
      `${signed(change)}, ${Math.abs(change) <= 10 ? 'met' : '**missed**'}. Between the two, RSS after GC ranged ` +
      `${mib(Math.min(...rssValues))}–${mib(Math.max(...rssValues))} MiB; the JavaScript heap after GC went ${signed(heapChange)} (what a leak in JavaScript would grow).`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  await writeBenchmarkSection('soak', lines);
  await gateway.stop();
  await upstream.stop();
  await env.close();
}

/** The change from one chunk's reading to another's, in %. */
function percentChange(readings: ReadonlyMap<number, number>, from: number, to: number): number {
  const before = readings.get(from) ?? NaN;
  return (100 * ((readings.get(to) ?? NaN) - before)) / before;
}

main().catch((error: unknown) => {
  log(`failed: ${(error as Error).stack ?? String(error)}`);
  process.exit(1);
});
