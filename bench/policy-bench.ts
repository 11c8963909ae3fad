// `npm run bench:policy`: policy evaluations per second on one core (one Node thread),
// through the gateway's engine (as with warm caches: shared frozen subject and facts, a new
// request object each time) and through opa-wasm's default object entry for comparison;
// then a million evaluations watching the WebAssembly memory and the process RSS.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { loadPolicy } from '@open-policy-agent/opa-wasm';
import { buildWasmBundle, resolveOpa } from '../src/authz/opa-toolchain';
import { readBundle } from '../src/authz/policy-bundle';
import type { PolicyInput } from '../src/authz/policy-engine';
import { WasmPolicyEngine } from '../src/authz/wasm-policy-engine';
import { projectRoot } from '../src/project-root';
import { arg, benchDir, log, writeBenchmarkSection } from './bench-environment';

const deepFreeze = <T>(value: T): T => {
  if (typeof value === 'object' && value !== null) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
};

// Subjects as the directory returns them for the benchmark's callers: three memberships,
// an admin one, and two with the default role plus a team role.
const DEFAULT = ['member:read', 'organization:read', 'project:read', 'team:read'];
const subject = deepFreeze({
  id: '3f1e2d4c-0000-4000-8000-000000000001',
  sub: 'user-1',
  email: 'user-1@example.com',
  memberships: {
    'org-1': { role: 'organization-admin', teams: [], roles: ['organization-admin'], permissions: ['*'] },
    'org-2': {
      role: 'default',
      teams: ['team-1'],
      roles: ['default', 'deployer'],
      permissions: [...DEFAULT, 'pipeline:read', 'pipeline:run', 'project:create'].sort(),
    },
    'org-3': {
      role: 'default',
      teams: ['team-1'],
      roles: ['default', 'deployer'],
      permissions: [...DEFAULT, 'pipeline:read', 'pipeline:run', 'project:create'].sort(),
    },
  },
});
const projectFacts = deepFreeze({ organization: { exists: true }, project: { exists: true, in_organization: true } });
const CASES: Array<Omit<PolicyInput, 'request'> & { method: string; path: string; route: string }> = [
  {
    method: 'GET',
    path: '/orgs/org-2/projects/project-1',
    route: '/orgs/{org}/projects/{project}',
    action: 'project:read',
    resource: { type: 'project', org: 'org-2', project: 'project-1' },
    subject,
    facts: projectFacts,
  },
  {
    method: 'DELETE',
    path: '/orgs/org-2/projects/project-1',
    route: '/orgs/{org}/projects/{project}',
    action: 'project:delete',
    resource: { type: 'project', org: 'org-2', project: 'project-1' },
    subject,
    facts: projectFacts,
  },
  {
    method: 'POST',
    path: '/orgs/org-3/projects/project-1/pipelines',
    route: '/orgs/{org}/projects/{project}/pipelines',
    action: 'pipeline:run',
    resource: { type: 'pipeline', org: 'org-3', project: 'project-1' },
    subject,
    facts: projectFacts,
  },
  {
    method: 'GET',
    path: '/orgs/org-9/projects/project-1',
    route: '/orgs/{org}/projects/{project}',
    action: 'project:read',
    resource: { type: 'project', org: 'org-9', project: 'project-1' },
    subject,
    facts: projectFacts,
  },
];

function inputOf(i: number): PolicyInput {
  const c = CASES[i % CASES.length]!;
  return {
    request: { id: `req-${i}`, method: c.method, path: c.path, route: c.route },
    action: c.action,
    resource: { ...c.resource },
    subject: c.subject,
    facts: c.facts,
  };
}

function rate(seconds: number, evaluate: (i: number) => unknown): { perSecond: number; meanUs: number } {
  const until = process.hrtime.bigint() + BigInt(Math.round(seconds * 1e9));
  const started = process.hrtime.bigint();
  let i = 0;
  while ((i & 1023) !== 0 || process.hrtime.bigint() < until) {
    evaluate(i);
    i += 1;
  }
  const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
  return { perSecond: i / elapsed, meanUs: (elapsed * 1e6) / i };
}

async function main(): Promise<void> {
  const seconds = arg('seconds', 5);
  const total = arg('evaluations', 1_000_000);
  const opa = await resolveOpa({ opaBin: process.env.OPA_BIN, searchPath: process.env.PATH, log });
  const { output } = await buildWasmBundle({
    opa,
    source: path.join(projectRoot, 'policies'),
    entrypoints: ['portcullis/decision'],
    output: path.join(benchDir, 'policy', 'bundle.tar.gz'),
  });
  const bundle = await readBundle(await readFile(output));
  const engine = await WasmPolicyEngine.create(bundle, 'portcullis/decision');
  const allowed = CASES.map((_, i) => engine.evaluate(inputOf(i)).decision.allow);
  if (allowed.join() !== 'true,false,true,false') throw new Error(`unexpected decisions ${allowed.join()}`);

  const raw = await loadPolicy(bundle.wasm);
  raw.setData(bundle.data);
  const entrypoint = raw.entrypoints['portcullis/decision']!;

  rate(1, (i) => engine.evaluate(inputOf(i))); // warm-up
  rate(1, (i) => raw.evaluate(inputOf(i), entrypoint));
  const gateway = rate(seconds, (i) => engine.evaluate(inputOf(i)));
  const sdk = rate(seconds, (i) => raw.evaluate(inputOf(i), entrypoint));
  log(`engine ${Math.round(gateway.perSecond)}/s, opa-wasm object input ${Math.round(sdk.perSecond)}/s`);

  const samples: string[] = [];
  const soakEngine = await WasmPolicyEngine.create(bundle, 'portcullis/decision');
  for (let i = 1; i <= total; i += 1) {
    soakEngine.evaluate(inputOf(i));
    if (i % 100_000 === 0) {
      // After a full collection (npm runs this with --expose-gc), RSS shows what is kept, not garbage not yet collected.
      (globalThis as { gc?: () => void }).gc?.();
      samples.push(
        `| ${i.toLocaleString('en')} | ${(soakEngine.memoryBytes / 1024).toFixed(0)} | ${(process.memoryUsage().rss / 2 ** 20).toFixed(1)} |`,
      );
    }
  }
  const lines = [
    '## Policy evaluation alone (`npm run bench:policy`)',
    '',
    `One Node.js thread, the shipped policies, ${CASES.length} inputs in turn (project read, delete, pipeline run, another organization: 2 allowed, 2 denied), subject with 3 memberships; ${seconds} s each after a 1 s warm-up.`,
    '',
    '| entry | evaluations/s | mean µs |',
    '|---|---|---|',
    `| \`WasmPolicyEngine.evaluate\` (the gateway's: pre-serialized input, cached parts serialized once, decision checked) | ${Math.round(gateway.perSecond).toLocaleString('en')} | ${gateway.meanUs.toFixed(1)} |`,
    `| opa-wasm \`evaluate(object)\` (the SDK's default: stringifies the whole input each time) | ${Math.round(sdk.perSecond).toLocaleString('en')} | ${sdk.meanUs.toFixed(1)} |`,
    '',
    `Target ≥ 50,000 evaluations/s on one core: ${gateway.perSecond >= 50_000 ? 'met' : `**missed** by ${Math.round(50_000 - gateway.perSecond).toLocaleString('en')}/s`}.`,
    '',
    `WebAssembly memory over ${total.toLocaleString('en')} evaluations (one instance; it is re-created past 64 MiB, which did ${soakEngine.recycledInstances === 0 ? 'not happen' : `happen ${soakEngine.recycledInstances} times`}):`,
    '',
    '| evaluations | wasm memory KiB | process RSS MiB (after a full GC) |',
    '|---|---|---|',
    ...samples,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  await writeBenchmarkSection('bench:policy', lines);
}

main().catch((error: unknown) => {
  log(`failed: ${(error as Error).stack ?? String(error)}`);
  process.exit(1);
});
