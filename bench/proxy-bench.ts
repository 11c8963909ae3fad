// `npm run bench`: the same loopback upstream behind (a) nothing, (b) Express 5 +
// http-proxy-middleware, (c) Portcullis with warm caches, (d) Portcullis with caches
// disabled, (e) an Express gateway asking `opa run --server` per request, (f) (c) with its
// policy evaluated on the event loop (policy.evaluation: inline; the default is auto); alternating
// rounds at a fixed concurrency; medians and ratios to (b) into BENCHMARKS.md.
// Options: --rounds 5 --duration 10 --connections 32 --users 200; --profile takes a CPU
// profile of (c) under load (the measured window only, after a warm-up) and prints where its
// time goes, instead of the comparison; --allocations prints the bytes (c) allocates per
// request (--requests 20000), and by whom, and with --survivors only those no scavenge
// collected (mostly what the young generation's collections copy). Two more rows, (h) and (i),
// are (b) and (c) with every tenth caller writing (`POST /orgs/{org}/projects`, answered by the
// upstream; --writes N for every N-th, --writes 0 for none): what a write costs Portcullis's
// caches (read your writes). Each target's CPU and PostgreSQL's are measured per request, and
// (b)'s event loop beside (c)'s.
import path from 'node:path';
import { organizationOf, seedBenchDirectory, type DirectorySize } from './bench-directory';
import {
  arg,
  describeMachine,
  IMAGE_NODE_FLAGS,
  flag,
  log,
  option,
  prepareEnvironment,
  startOpaServer,
  startTargetProcess,
  targetSettings,
  writeBenchmarkSection,
  type BenchEnvironment,
  type Measurement,
  type TargetProcess,
} from './bench-environment';
import { summarizeProfile } from './cpu-profile';
import { drive, median, type LoadRequest, type LoadResult } from './load';
import type { CallbackTimes } from './callback-times';
import type { Allocations, CpuFigures, LoopDelay } from './target-process';
import { STALL_MS } from './target-process';
import type { TargetKind } from './targets';
import type { EvaluationMode } from '../src/authz/evaluation-placement';

const SIZE: DirectorySize = {
  users: 1000,
  organizations: 100,
  membershipsPerUser: 3,
  projectsPerOrganization: 10,
  teamsPerOrganization: 2,
};

interface Target {
  id: string;
  label: string;
  kind: TargetKind;
  cache?: boolean;
  evaluation?: EvaluationMode;
  process?: TargetProcess;
  url?: string;
  /** What it is driven with, when not the reads. */
  requests?: LoadRequest[];
}

async function main(): Promise<void> {
  const rounds = arg('rounds', 5);
  const durationS = arg('duration', 10);
  const connections = arg('connections', 32);
  const callers = arg('users', 200);
  const started = Date.now();

  const env = await prepareEnvironment('proxy');
  await seedBenchDirectory(env.db, SIZE, log);
  // Each request: a distinct caller reading a project of an organization where they have the
  // default role and a team (so the subject has roles, teams and several memberships). In the
  // write mix every N-th caller creates a project there instead (allowed by its default role).
  const writeEvery = arg('writes', 10);
  const requests: LoadRequest[] = [];
  const mix: LoadRequest[] = [];
  for (let user = 1; user <= callers; user += 1) {
    const org = organizationOf(SIZE, user, 1);
    const authorization = `Bearer ${await env.sign(`user-${user}`)}`;
    const read: LoadRequest = {
      method: 'GET',
      path: `/orgs/org-${org}/projects/project-${(user % SIZE.projectsPerOrganization) + 1}`,
      headers: { authorization },
    };
    requests.push(read);
    mix.push(
      writeEvery > 0 && user % writeEvery === 0
        ? { method: 'POST', path: `/orgs/org-${org}/projects`, headers: { authorization, 'content-length': '0' } }
        : read,
    );
  }

  const upstream = await startTargetProcess('upstream', targetSettings(env, { upstreamUrl: '' }));
  const opaServer = flag('profile') || flag('allocations') ? undefined : await startOpaServer(env.opa);
  const settings = (cache: boolean, evaluation: EvaluationMode = 'auto') =>
    targetSettings(env, { upstreamUrl: upstream.url, opaUrl: opaServer?.url ?? '', cache, evaluation });

  if (flag('profile')) {
    // --target b profiles the plain Express proxy instead, to set (c)'s profile beside it; --target f
    // profiles (c) with its policy inline, --target d Portcullis with its caches disabled. A
    // Portcullis profile is of its main thread only: the profiler sees no other.
    const chosen = option('target');
    const id = chosen === 'b' || chosen === 'd' || chosen === 'f' ? chosen : 'c';
    const gateway = await startTargetProcess(
      id === 'b' ? 'express-proxy' : 'portcullis',
      settings(id !== 'd', id === 'f' ? 'inline' : 'auto'),
    );
    await drive(gateway.url, requests, { connections, durationS: 3 });
    await gateway.measure('profile', 'start');
    const result = await drive(gateway.url, requests, { connections, durationS: arg('duration', 15) });
    const file = await gateway.measure<string>('profile', 'stop', path.join(env.dir, `${id}.cpuprofile`));
    log(`(${id}) under profiling: ${Math.round(result.rps)} req/s, p99 ${result.p99.toFixed(2)} ms, ${result.failed} failed`);
    await gateway.stop();
    process.stdout.write(`${(await summarizeProfile(file, 30, result.ok + result.failed)).join('\n')}\n`);
  } else if (flag('allocations')) {
    // --target b counts the plain Express proxy's instead, to set (c)'s beside it.
    const id = option('target') === 'b' ? 'b' : 'c';
    const gateway = await startTargetProcess(id === 'b' ? 'express-proxy' : 'portcullis', settings(true));
    await drive(gateway.url, requests, { connections, durationS: 3 });
    const amount = arg('requests', 20_000);
    const kind = flag('survivors') ? 'survivors' : 'allocations';
    await gateway.measure(kind, 'start');
    const result = await drive(gateway.url, requests, { connections, amount });
    const allocations = await gateway.measure<Allocations>(kind, 'stop');
    await gateway.stop();
    const perRequest = (bytes: number) => (bytes / result.ok).toFixed(0);
    process.stdout.write(
      [
        `(${id}) ${result.ok} allowed requests (${result.failed} other): ${perRequest(allocations.bytes)} bytes ${kind === 'survivors' ? 'per request allocated on the JavaScript heap and not collected by a scavenge' : 'allocated per request on the JavaScript heap'}`,
        '| bytes per request | allocated in |',
        '|---|---|',
        ...allocations.top.map((entry) => `| ${perRequest(entry.bytes)} | \`${entry.frame}\` |`),
        '',
        '| bytes per request | allocated under (a Portcullis module and everything it called) |',
        '|---|---|',
        ...allocations.modules.map((entry) => `| ${perRequest(entry.bytes)} | \`${entry.module}\` |`),
        '',
      ].join('\n'),
    );
  } else {
    const targets: Target[] = [
      { id: 'a', label: 'upstream direct', kind: 'upstream' },
      { id: 'b', label: 'Express 5 + http-proxy-middleware, no authorization', kind: 'express-proxy' },
      { id: 'g', label: "(b) on a server made with Express's prototypes, as Portcullis makes its own", kind: 'express-proxy-classes' },
      { id: 'c', label: 'Portcullis (its Express app), caches warm', kind: 'portcullis', cache: true },
      { id: 'f', label: 'Portcullis, caches warm, `policy.evaluation: inline`', kind: 'portcullis', cache: true, evaluation: 'inline' },
      { id: 'd', label: 'Portcullis (its Express app), caches disabled', kind: 'portcullis', cache: false },
      { id: 'e', label: 'Express gateway + `opa run --server` over HTTP', kind: 'opa-gateway' },
    ];
    if (writeEvery > 0) {
      const writing = `${everyNth(writeEvery)} caller writing`;
      targets.push(
        { id: 'h', label: `(b) with ${writing}`, kind: 'express-proxy', requests: mix },
        { id: 'i', label: `(c) with ${writing}`, kind: 'portcullis', cache: true, requests: mix },
      );
    }
    for (const target of targets) {
      if (target.kind === 'upstream') {
        target.url = upstream.url;
        continue;
      }
      target.process = await startTargetProcess(target.kind, settings(target.cache ?? true, target.evaluation));
      target.url = target.process.url;
    }
    await checkTargets(targets, requests, (sub) => env.sign(sub));
    for (const target of targets) await drive(target.url!, target.requests ?? requests, { connections, durationS: 3 }); // warm-up: JIT, caches, pools

    const results = new Map<string, LoadResult[]>(targets.map((target) => [target.id, []]));
    // (c)'s event loop while it is driven (a batch of decision records must not stall it), and
    // (b)'s beside it: a saturated loop's turns are long without any synchronous block.
    const delays = { b: [] as LoopDelay[], c: [] as LoopDelay[] };
    for (let round = 1; round <= rounds; round += 1) {
      for (const target of targets) {
        const watched = target.id === 'b' || target.id === 'c' ? delays[target.id] : undefined;
        const result = await measuredRound(env, target.id, async () => {
          if (watched) await target.process!.measure('loopDelay', 'start');
          await target.process?.measure('cpu', 'start');
          const driven = await drive(target.url!, target.requests ?? requests, { connections, durationS });
          const cpu = await target.process?.measure<CpuFigures>('cpu', 'stop');
          if (cpu !== undefined) {
            driven.cpu = cpu;
            driven.cpuUsPerRequest = cpu.processUs / (driven.ok + driven.failed);
          }
          if (watched) watched.push(await target.process!.measure<LoopDelay>('loopDelay', 'stop'));
          return driven;
        });
        results.get(target.id)!.push(result);
        log(
          `round ${round}/${rounds} (${target.id}) ${Math.round(result.rps)} req/s, p50 ${result.p50.toFixed(2)} ms, p99 ${result.p99.toFixed(2)} ms, ` +
            `CPU ${perRequest(result.cpuUsPerRequest)}, PostgreSQL ${perRequest(result.postgresCpuUsPerRequest)}`,
        );
      }
    }
    // The same, paced at half (c)'s rate: a saturated loop runs every ready connection's work in
    // one turn, so at full load the figures above measure that queue more than any one stall.
    // (b) at the same pace is the control: what the load generator's bursts and the shared
    // machine do to a loop without any authorization work.
    const pacedRate = Math.round(median(results.get('c')!.map((result) => result.rps)) / 2);
    /** One more run of (b) or (c), on its own after PostgreSQL has settled, with one measurement around it. */
    const measuredRun = async <T>(
      id: 'b' | 'c',
      measurement: Measurement,
      options: { connections: number; durationS: number; rate?: number },
    ) => {
      const target = targets.find((candidate) => candidate.id === id)!;
      await settle(env.db);
      await target.process!.measure(measurement, 'start');
      const load = await drive(target.url!, requests, options);
      return { load, figure: await target.process!.measure<T>(measurement, 'stop') };
    };
    const pacedDelays = { b: undefined as LoopDelay | undefined, c: undefined as LoopDelay | undefined };
    for (const id of ['b', 'c'] as const) {
      const { load: paced, figure: delay } = await measuredRun<LoopDelay>(id, 'loopDelay', { connections, durationS, rate: pacedRate });
      pacedDelays[id] = delay;
      log(
        `(${id}) paced at ${pacedRate} req/s: ${Math.round(paced.rps)} req/s, p99 ${paced.p99.toFixed(2)} ms, loop delay p99 ${delay.p99.toFixed(2)} ms, max ${delay.max.toFixed(2)} ms`,
      );
    }
    // Then every callback timed one by one, at full load again (a round of its own: the hook
    // slows every callback down): whether any piece of JavaScript runs long by itself, or only
    // with a garbage-collection pause inside it.
    const callbacks = { b: undefined as CallbackTimes | undefined, c: undefined as CallbackTimes | undefined };
    for (const id of ['b', 'c'] as const) {
      const { figure: times } = await measuredRun<CallbackTimes>(id, 'callbacks', { connections, durationS });
      callbacks[id] = times;
      log(
        `(${id}) callbacks: ${times.count}, longest ${times.longest.toFixed(2)} ms (${times.longestKind}; GC ${times.longestGc.toFixed(2)}, CPU ${times.longestCpu.toFixed(2)} ms, main thread ${times.longestMainCpu?.toFixed(2) ?? 'unread'} ms), ${times.over} over ${STALL_MS} ms; JavaScript running at most ${times.longestRunning.toFixed(2)} ms (${times.longestRunningKind}; readings ${times.longestRunningReadingsApart?.toFixed(2) ?? '–'} ms apart), ${times.overRunning} over ${STALL_MS} ms`,
      );
    }
    // And one request at a time: the latency each adds with no queue in front of it (the paced
    // runs above are not that: the load generator sends each second's requests in a burst).
    const alone = { b: undefined as LoadResult | undefined, c: undefined as LoadResult | undefined };
    for (const id of ['b', 'c'] as const) {
      const target = targets.find((candidate) => candidate.id === id)!;
      await settle(env.db);
      const result = (alone[id] = await drive(target.url!, requests, { connections: 1, durationS }));
      log(`(${id}) one connection: ${Math.round(result.rps)} req/s, p50 ${result.p50.toFixed(2)} ms, p99 ${result.p99.toFixed(2)} ms`);
    }
    const pacedDelay = pacedDelays.c!;
    const lines = await report(
      targets,
      results,
      delays,
      { rate: pacedRate, delay: pacedDelay, control: pacedDelays.b! },
      { c: alone.c!, b: alone.b! },
      { c: callbacks.c!, b: callbacks.b! },
      { rounds, durationS, connections, callers, writeEvery },
      env,
    );
    process.stdout.write(`${lines.join('\n')}\n`);
    await writeBenchmarkSection('bench:proxy', lines);
    for (const target of targets) await target.process?.stop();
  }
  await upstream.stop();
  await opaServer?.stop();
  await env.close();
  log(`done in ${Math.round((Date.now() - started) / 1000)} s`);
}

/** 10 → `every 10th`, 2 → `every 2nd`, 1 → `every`. */
function everyNth(n: number): string {
  if (n === 1) return 'every';
  const suffix = n % 100 >= 11 && n % 100 <= 13 ? 'th' : (({ 1: 'st', 2: 'nd', 3: 'rd' } as Record<number, string>)[n % 10] ?? 'th');
  return `every ${n}${suffix}`;
}

/** A difference in ms with its sign, as the report writes them. */
function signed(ms: number): string {
  return `${ms >= 0 ? '+' : ''}${ms.toFixed(2)}`;
}

function perRequest(us: number | undefined): string {
  return us === undefined ? 'not measured' : `${Math.round(us)} µs/request`;
}

/**
 * Waits until PostgreSQL is idle (the previous gateway's decision batches written), so that
 * one target's audit writes do not land in the next target's measurement. At most 15 s.
 */
/**
 * One measured round of a target: `run` drives it once PostgreSQL is quiet, and PostgreSQL's CPU
 * per request counts until the target's decision records are written too (still being written,
 * they count as its own). A request answered with anything but 2xx fails the benchmark.
 */
async function measuredRound(
  env: Pick<BenchEnvironment, 'db' | 'postgresCpuUs'>,
  id: string,
  run: () => Promise<LoadResult>,
): Promise<LoadResult> {
  await settle(env.db);
  const postgresAtStart = env.postgresCpuUs();
  const result = await run();
  await settle(env.db);
  const postgresAtEnd = env.postgresCpuUs();
  if (postgresAtStart !== undefined && postgresAtEnd !== undefined) {
    result.postgresCpuUsPerRequest = (postgresAtEnd - postgresAtStart) / (result.ok + result.failed);
  }
  if (result.failed > 0) throw new Error(`(${id}) answered ${result.failed} requests with something other than 2xx`);
  return result;
}

async function settle(db: import('knex').Knex): Promise<void> {
  const deadline = Date.now() + 15_000;
  let quiet = 0;
  while (quiet < 3 && Date.now() < deadline) {
    const { rows } = await db.raw<{ rows: { active: number }[] }>(
      "select count(*)::int as active from pg_stat_activity where state = 'active' and pid <> pg_backend_pid() and backend_type = 'client backend'",
    );
    quiet = rows[0]!.active === 0 ? quiet + 1 : 0;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Every target must forward an allowed request, and the gateways must refuse a forbidden one. */
async function checkTargets(targets: Target[], requests: LoadRequest[], sign: (sub: string) => Promise<string>): Promise<void> {
  const sample = requests[0]!;
  const outsider = { authorization: `Bearer ${await sign('nobody')}` };
  for (const target of targets) {
    const allowed = await fetch(`${target.url}${sample.path}`, { headers: sample.headers });
    if (allowed.status !== 200) throw new Error(`(${target.id}) answers ${allowed.status} to an allowed request`);
    if (target.kind === 'portcullis' || target.kind === 'opa-gateway') {
      const denied = await fetch(`${target.url}${sample.path}`, { headers: outsider });
      if (denied.status < 400) throw new Error(`(${target.id}) forwards a request the policy denies`);
    }
  }
}

async function report(
  targets: Target[],
  results: Map<string, LoadResult[]>,
  delays: { b: readonly LoopDelay[]; c: readonly LoopDelay[] },
  paced: { rate: number; delay: LoopDelay; control: LoopDelay },
  alone: { b: LoadResult; c: LoadResult },
  callbacks: { b: CallbackTimes; c: CallbackTimes },
  run: { rounds: number; durationS: number; connections: number; callers: number; writeEvery: number },
  env: { db: import('knex').Knex },
): Promise<string[]> {
  const medianOf = (runs: readonly LoadResult[], figure: (r: LoadResult) => number | undefined) =>
    runs.every((r) => figure(r) !== undefined) ? median(runs.map((r) => figure(r)!)) : undefined;
  const summary = new Map(
    targets.map((target) => {
      const runs = results.get(target.id)!;
      return [
        target.id,
        {
          rps: median(runs.map((r) => r.rps)),
          p50: median(runs.map((r) => r.p50)),
          p99: median(runs.map((r) => r.p99)),
          cpu: medianOf(runs, (r) => r.cpuUsPerRequest),
          postgres: medianOf(runs, (r) => r.postgresCpuUsPerRequest),
          runs,
        },
      ];
    }),
  );
  const b = summary.get('b')!;
  const c = summary.get('c')!;
  const d = summary.get('d')!;
  const e = summary.get('e')!;
  const f = summary.get('f')!;
  const g = summary.get('g')!;
  const h = summary.get('h');
  const i = summary.get('i');
  const worstDelay = Math.max(...delays.c.map((delay) => delay.max));
  const stalls = delays.c.reduce((sum, delay) => sum + delay.stalls, 0);
  const rows = targets.map((target) => {
    const s = summary.get(target.id)!;
    const spread = `${Math.round(Math.min(...s.runs.map((r) => r.rps)))}–${Math.round(Math.max(...s.runs.map((r) => r.rps)))}`;
    const cpu = s.cpu === undefined ? 'not measured' : `${Math.round(s.cpu)} (${(b.cpu! / s.cpu).toFixed(2)}×)`;
    const postgres = s.postgres === undefined ? 'not measured' : `${Math.round(s.postgres)}`;
    return `| (${target.id}) ${target.label} | ${Math.round(s.rps)} | ${spread} | ${s.p50.toFixed(2)} | ${s.p99.toFixed(2)} | ${(s.rps / b.rps).toFixed(2)}× | ${signed(s.p99 - b.p99)} | ${cpu} | ${postgres} |`;
  });
  const breakdown = targets.filter((target) => target.process).map((target) => cpuBreakdownRow(target, summary.get(target.id)!.runs));
  const delayCells = (delay: LoopDelay | undefined) =>
    delay ? `${delay.p50.toFixed(2)} | ${delay.p99.toFixed(2)} | ${delay.max.toFixed(2)} | ${delay.samples} | ${delay.stalls}` : '| | | |';
  const verdict = (ok: boolean) => (ok ? 'met' : '**missed**');
  return [
    '## Proxy comparison (`npm run bench`)',
    '',
    ...(await describeMachine(env.db)),
    `- load: autocannon, ${run.connections} connections, ${run.rounds} alternating rounds of ${run.durationS} s per target (after a 3 s warm-up each); ` +
      `${run.callers} distinct callers (tokens) reading a project of one of their organizations (\`GET /orgs/{org}/projects/{project}\`, allowed)` +
      (h && i
        ? `, except in (h) and (i), where ${everyNth(run.writeEvery)} caller creates a project there instead (\`POST /orgs/{org}/projects\`, allowed and answered by the upstream)`
        : '') +
      '; every response checked to be 2xx; ' +
      `every target's Node.js process runs with \`${IMAGE_NODE_FLAGS.join(' ')}\`, as the container image runs Portcullis`,
    "- figures: median over the rounds; latency measured per response by the benchmark (not autocannon's whole-millisecond histogram); " +
      "CPU: user + system time of the target's own process (`process.cpuUsage`) per request, which other work on the machine does not inflate the way it does req/s; " +
      "PostgreSQL: CPU time of all of PostgreSQL's processes (`/proc/<pid>/stat`) from the round's start until the target's decision records are written, per request " +
      '(on the same 2 cores, so it competes with the target, the load generator and the upstream)',
    '',
    '| target | req/s (median) | req/s (min–max) | p50 ms | p99 ms | req/s vs (b) | p99 vs (b), ms | CPU µs per request of its process (b ÷ it) | PostgreSQL CPU µs per request |',
    '|---|---|---|---|---|---|---|---|---|',
    ...rows,
    '',
    "Where each target's CPU time goes, µs per request (medians over the rounds; the longest pause is the longest of all rounds): its main thread, which runs the event loop, and the " +
      "garbage-collection pauses inside it (V8's young-generation scavenges and the rest, as `perf_hooks` reports them); the other " +
      "threads are V8's helpers (parallel and concurrent GC), the policy's worker thread in (c) and (d), and libuv's. A scavenge's pause " +
      'grows with what survives it: the requests in flight and, in Portcullis, the decision records waiting for their batch. ' +
      "The last column is the kernel's count (`schedstat`) of the time the main thread could have run but every core was busy with something else: " +
      'the load generator, the upstream, PostgreSQL, its own other threads.',
    '',
    '| target | process | main thread | other threads | scavenge pauses | other GC pauses | scavenges per 1,000 requests | mean scavenge ms | longest GC pause ms | main thread ready but waiting for a core |',
    '|---|---|---|---|---|---|---|---|---|---|',
    ...breakdown,
    '',
    'Event loops while driven (`monitorEventLoopDelay`, a timer every 1 ms; figures are the time between two firings, so 1 ms is no delay). ' +
      "At full load a loop turn serves every connection whose data is ready, so a long interval there is one turn's queue of requests, not " +
      'necessarily a synchronous block: (b), which has no blocking work at all, shows what saturation alone does. The last row drives both at the ' +
      "same pace, half of (c)'s rate: the load generator still sends in bursts, and a burst's requests wait for each other, longer the more each " +
      'costs; (b) there is the control for the bursts and the shared machine:',
    '',
    '| round | (b) p50 ms | (b) p99 ms | (b) max ms | (b) samples | (b) > 5 ms | (c) p50 ms | (c) p99 ms | (c) max ms | (c) samples | (c) > 5 ms |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
    ...delays.c.map((delay, i) => `| ${i + 1} | ${delayCells(delays.b[i])} | ${delayCells(delay)} |`),
    `| both paced at ${paced.rate} req/s (half of (c)'s median) | ${delayCells(paced.control)} | ${delayCells(paced.delay)} |`,
    '',
    `Targets: (c) ≥ 0.85× (b) req/s: ${(c.rps / b.rps).toFixed(2)}× ${verdict(c.rps >= 0.85 * b.rps)}; ` +
      `p99 (c) ≤ p99 (b) + 2 ms: ${signed(c.p99 - b.p99)} ms ${verdict(c.p99 <= b.p99 + 2)}; ` +
      `(c) ≥ 4× (e): ${(c.rps / e.rps).toFixed(2)}× ${verdict(c.rps >= 4 * e.rps)}; ` +
      `(d) ≥ 1.5× (e): ${(d.rps / e.rps).toFixed(2)}× ${verdict(d.rps >= 1.5 * e.rps)}; ` +
      `no event-loop stall over ${STALL_MS} ms in (c) at full load: longest ${(worstDelay - 1).toFixed(2)} ms beyond the 1 ms tick, ${stalls} over ${STALL_MS} ms ${verdict(stalls === 0)}; ` +
      `paced: longest ${(paced.delay.max - 1).toFixed(2)} ms, ${paced.delay.stalls} over ${STALL_MS} ms ${verdict(paced.delay.stalls === 0)} ` +
      `((b) at that pace: longest ${(paced.control.max - 1).toFixed(2)} ms, ${paced.control.stalls} over ${STALL_MS} ms).`,
    '',
    `Every callback timed (async_hooks around each callback the event loop runs, a further ${run.durationS} s of each at full load, not in the figures above: ` +
      `the hook slows every callback): ${callbackSentence('(c)', callbacks.c)}; ${callbackSentence('(b)', callbacks.b)}. ` +
      "A callback is one unbroken run of JavaScript; on the clock it also holds the garbage-collection pauses that began inside it and any time the thread waited for one of the machine's two cores, so JavaScript ran at most its time without those pauses, at most the process's CPU time meanwhile (all its threads), and at most the main thread's (read from `/proc` by a helper thread every ~0.5 ms: what the main thread ran from the last reading before the callback to the first after it).",
    '',
    `One request at a time (one connection, ${run.durationS} s each), the latency each adds with no queue in front of it: ` +
      `(c) p50 ${alone.c.p50.toFixed(2)} ms, p99 ${alone.c.p99.toFixed(2)} ms, ${Math.round(alone.c.rps)} req/s; ` +
      `(b) p50 ${alone.b.p50.toFixed(2)} ms, p99 ${alone.b.p99.toFixed(2)} ms, ${Math.round(alone.b.rps)} req/s; ` +
      `(c) − (b): p50 ${signed(alone.c.p50 - alone.b.p50)} ms, p99 ${signed(alone.c.p99 - alone.b.p99)} ms.`,
    '',
    // A bound a few % from the median is met or missed by the machine's drift over one run (up
    // to 40 % on this shared machine): each round's ratio compares targets run seconds apart.
    "Each round's ratios (the targets alternate, so a round compares runs seconds apart; the verdicts above are on the medians): " +
      [
        roundRatios('(c) ÷ (b)', c.runs, b.runs, 0.85),
        roundRatios('(c) ÷ (e)', c.runs, e.runs, 4),
        roundRatios('(d) ÷ (e)', d.runs, e.runs, 1.5),
      ].join('; ') +
      '.',
    '',
    "(g) is (b) on an HTTP server made as Portcullis makes its gateway's (`createExpressServer`): its requests and responses are made with " +
      "Express's `request` and `response` prototypes, so the `Object.setPrototypeOf` Express applies to each of them changes nothing (the twelfth " +
      `round of the notes below). Against it, as equally built Express: (g) ${(g.rps / b.rps).toFixed(2)}× (b); (c) ${(c.rps / g.rps).toFixed(2)}× (g), ` +
      `p99 ${signed(c.p99 - g.p99)} ms against (g)'s; ${roundRatios('(c) ÷ (g)', c.runs, g.runs, 0.85)}.`,
    '',
    ...(h && i
      ? [
          `With ${everyNth(run.writeEvery)} caller writing, (i) serves ${(i.rps / h.rps).toFixed(2)}× (h), p99 ${signed(i.p99 - h.p99)} ms against (h)'s, ` +
            `${i.postgres === undefined ? 'PostgreSQL not measured' : `PostgreSQL ${Math.round(i.postgres)} µs a request`} (reads only, (c): ${c.postgres === undefined ? 'not measured' : Math.round(c.postgres)}); ` +
            `${roundRatios('(i) ÷ (h)', i.runs, h.runs, 0.85)}. After each write it forwards and sees answered below 400, Portcullis catches its caches up ` +
            "with the directory (one round trip on its change listener's connection) before it reads them again: what read-your-writes costs.",
          '',
        ]
      : []),
    `(c) and (d) run the default \`policy.evaluation: auto\` (at this load the policy runs in a worker thread beside the event loop; a request that comes alone, as in the one-connection runs, is judged inline); (f) is (c) with ` +
      `\`policy.evaluation: inline\`, the policy on the event loop: ${(f.rps / b.rps).toFixed(2)}× (b), ` +
      `${(c.rps / f.rps).toFixed(2)}× as many req/s in (c) as in (f), ${(f.rps / e.rps).toFixed(2)}× (e), p99 ${signed(f.p99 - b.p99)} ms against (b)'s.`,
    '',
    '(e) matches the route, verifies the JWT (no cache) and loads subject and facts from PostgreSQL exactly as (d) does, then POSTs the same ' +
      'input to `opa run --server` (`/v1/data/portcullis/decision`, keep-alive) and forwards with http-proxy-middleware; unlike (c) and (d) ' +
      'it neither records decisions nor signs identity assertions. (b) and (e) use a keep-alive agent to the upstream, as Portcullis does.',
  ];
}

function callbackSentence(label: string, times: CallbackTimes): string {
  const mainThread = times.longestMainCpu === undefined ? '' : ` and at most ${times.longestMainCpu.toFixed(2)} ms of its main thread's`;
  const runningAbout = [
    times.longestRunningKind,
    times.longestRunningReadingsApart === undefined
      ? ''
      : `the main thread's readings around it ${times.longestRunningReadingsApart.toFixed(2)} ms apart`,
  ]
    .filter(Boolean)
    .join('; ');
  return (
    `${label} ran ${times.count.toLocaleString('en-US')} callbacks, ${times.over} over ${STALL_MS} ms on the clock; the longest took ${times.longest.toFixed(2)} ms ` +
    `(${times.longestKind || 'its kind unknown'}) with ${times.longestGc.toFixed(2)} ms of garbage-collection pauses inside it, ${times.longestCpu.toFixed(2)} ms of the process's CPU time meanwhile${mainThread}; ` +
    `JavaScript ran at most ${times.longestRunning.toFixed(2)} ms in any one callback${runningAbout ? ` (${runningAbout})` : ''}, over ${STALL_MS} ms in ${times.overRunning}`
  );
}

/** One target's row of the CPU breakdown: medians over its rounds of each figure per request. */
function cpuBreakdownRow(target: Target, runs: readonly LoadResult[]): string {
  const measured = runs.filter((run) => run.cpu !== undefined);
  /** The median over the rounds of a figure divided by each round's requests; undefined when a round lacks it. */
  const perRequest = (figure: (cpu: CpuFigures) => number | undefined) => {
    const values: number[] = [];
    for (const run of measured) {
      const value = figure(run.cpu!);
      if (value === undefined) return undefined;
      values.push(value / (run.ok + run.failed));
    }
    return values.length > 0 ? median(values) : undefined;
  };
  const us = (value: number | undefined) => (value === undefined ? 'not measured' : `${Math.round(value)}`);
  const main = perRequest((cpu) => cpu.mainThreadUs);
  const all = perRequest((cpu) => cpu.processUs);
  const scavengesPerThousand = perRequest((cpu) => cpu.scavenges * 1000);
  const meanScavenge = median(measured.map((run) => (run.cpu!.scavenges > 0 ? run.cpu!.scavengeUs / run.cpu!.scavenges / 1000 : 0)));
  const longest = Math.max(...measured.map((run) => run.cpu!.longestGcPauseMs));
  const other = perRequest((cpu) => (cpu.mainThreadUs === undefined ? undefined : cpu.processUs - cpu.mainThreadUs));
  const waiting = perRequest((cpu) => cpu.mainThreadWaitUs);
  return (
    `| (${target.id}) | ${us(all)} | ${us(main)} | ${us(other)} | ${us(perRequest((cpu) => cpu.scavengeUs))} | ${us(perRequest((cpu) => cpu.otherGcUs))} | ` +
    `${scavengesPerThousand === undefined ? 'not measured' : scavengesPerThousand.toFixed(1)} | ${meanScavenge.toFixed(2)} | ${longest.toFixed(2)} | ${us(waiting)} |`
  );
}

/** `label: r1×, r2×, … (k of n rounds at or over bound×)`, a round's ratio being its req/s over the other's in that round. */
function roundRatios(label: string, runs: readonly LoadResult[], against: readonly LoadResult[], bound: number): string {
  const ratios = runs.map((run, i) => run.rps / against[i]!.rps);
  const met = ratios.filter((ratio) => ratio >= bound).length;
  return `${label} ${ratios.map((ratio) => `${ratio.toFixed(2)}×`).join(', ')} (${met} of ${ratios.length} rounds at or over ${bound}×)`;
}

main().catch((error: unknown) => {
  log(`failed: ${(error as Error).stack ?? String(error)}`);
  process.exit(1);
});
