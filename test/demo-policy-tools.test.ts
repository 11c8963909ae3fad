// A policy author's tools against the running demo, as real processes: `portcullis demo
// --shadow DIR` serves the candidate beside the shipped policy, the banner names each demo
// user's token sub, `explain` finds the demo without a configuration file, and `policy
// disagreements` reads what the candidate would have decided differently.
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { requireBuild, runCli, spawnCli } from './support/cli-process';
import { copyShippedPolicies, scratchDir, withoutStar } from './support/policy-workspace';
import { waitFor } from './support/wait-for';

let work: string;
let stateDir: string;
let candidate: string;
let demo: { child: ChildProcessWithoutNullStreams; output: () => string } | undefined;

beforeAll(async () => {
  requireBuild();
  work = await scratchDir('demo-tools');
  stateDir = path.join(work, 'state');
  candidate = await copyShippedPolicies(work, 'candidate');
  const organization = path.join(candidate, 'organization.rego');
  await writeFile(organization, withoutStar(await readFile(organization, 'utf8')));
  const child = spawnCli(['demo', '--state-dir', stateDir, '--port', '0', '--admin-port', '0', '--shadow', candidate]);
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  demo = { child, output: () => output };
  const exited = new Promise<never>((_, reject) =>
    child.on('close', (code) => reject(new Error(`the demo exited with ${code}:\n${output}`))),
  );
  await Promise.race([
    waitFor(() => (output.includes('Press Ctrl-C to stop everything.') ? true : undefined), { timeoutMs: 60_000, what: 'the demo' }),
    exited,
  ]);
}, 90_000);

afterAll(async () => {
  if (demo && demo.child.exitCode === null) {
    const closed = new Promise((resolve) => demo!.child.on('close', resolve));
    demo.child.kill('SIGINT');
    await closed;
  }
  if (work) await rm(work, { recursive: true, force: true });
}, 30_000);

const printed = (pattern: RegExp) => pattern.exec(demo!.output())?.[1] ?? '';
const env = () => ({ PORTCULLIS_STATE_DIR: stateDir });

describe('portcullis demo --shadow DIR', () => {
  it('serves the candidate as the shadow policy, shown by GET /admin/v1/policy', async () => {
    const adminUrl = printed(/, admin (http:\/\/[0-9.:]+)/);
    const res = await fetch(`${adminUrl}/admin/v1/policy`, {
      headers: { authorization: `Bearer ${printed(/export ADMIN_TOKEN='([^']+)'/)}` },
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { revision: string; shadow: { source: string; revision: string; last_error: unknown } | null };
    expect(body.shadow).toMatchObject({ source: candidate, last_error: null });
    expect(body.shadow!.revision).not.toBe(body.revision);
  });

  it('prints each demo user’s token sub', () => {
    expect(demo!.output()).toContain(
      'Demo users and their token sub: alice = demo|alice, bob = demo|bob, carol = demo|carol, dave = demo|dave',
    );
  });

  it('lets `policy disagreements` read what the candidate decided differently', async () => {
    const gateway = printed(/gateway (http:\/\/[0-9.:]+)/);
    const res = await fetch(`${gateway}/orgs/acme`, { headers: { authorization: `Bearer ${printed(/export ALICE='([^']+)'/)}` } });
    expect(res.status).toBe(200);
    const decision = res.headers.get('x-portcullis-decision');
    const rows = await waitFor(
      async () => {
        const run = await runCli(['policy', 'disagreements', '--format', 'json'], env());
        const found = run.code === 0 ? (JSON.parse(run.stdout) as Array<{ decision_id: string }>) : [];
        return found.some((row) => row.decision_id === decision) ? found : undefined;
      },
      { timeoutMs: 15_000, what: 'the disagreement of alice’s request' },
    );
    expect(rows[0]).toMatchObject({
      decision_id: decision,
      subject: 'demo|alice',
      active: { allow: true },
      shadow: { allow: false, status: 403 },
    });
  });
});

describe('portcullis explain against the running demo', () => {
  it('finds the demo through its state folder, without a configuration file', async () => {
    const access = path.join(stateDir, 'admin.json');
    expect((await stat(access)).mode & 0o777).toBe(0o600);
    const run = await runCli(['explain', '--as', 'demo|bob', 'DELETE', '/orgs/acme/projects/web'], env());
    expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
    expect(run.stdout).toMatch(/^DELETE \/orgs\/acme\/projects\/web as demo\|bob \(user [0-9a-f-]{36}, bob@example\.com\)\n/);
    expect(run.stdout).toContain(
      "  - missing permission 'project:delete' in organization 'acme' (your roles there: default, project-creator)",
    );
    expect(run.stdout).toContain("  - default role project-admin (acme's own, via project:*)");
    expect(run.stdout).toMatch(/recorded as dry-run decision [0-9a-f-]{36}/);
  });

  it('says how to reach a gateway when no demo runs on the state folder', async () => {
    const elsewhere = path.join(work, 'no-demo-here');
    const run = await runCli(['explain', '--as', 'demo|bob', 'GET', '/orgs/acme', '--state-dir', elsewhere]);
    expect(run.code).toBe(2);
    expect(run.stderr.trim()).toBe(
      `portcullis: no configuration file and no demo running on ${elsewhere}: pass --config FILE (or set PORTCULLIS_CONFIG), or start the demo (npm start)`,
    );
  });

  it('no longer finds a demo that has stopped', async () => {
    const closed = new Promise((resolve) => demo!.child.on('close', resolve));
    demo!.child.kill('SIGINT');
    await closed;
    expect(existsSync(path.join(stateDir, 'admin.json'))).toBe(false);
    const run = await runCli(['explain', '--as', 'demo|bob', 'GET', '/orgs/acme'], env());
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/no demo running on/);
  }, 30_000);
});

describe('portcullis start --shadow', () => {
  it('is refused with a configuration file, which sets policy.shadow.source itself', async () => {
    const config = path.join(work, 'portcullis.yaml');
    await writeFile(config, 'auth: { issuer: x, audience: y, jwks_file: k.json }\nservices: {}\n');
    const run = await runCli(['start', '--config', config, '--shadow', candidate]);
    expect(run.code).toBe(2);
    expect(run.stderr.trim()).toBe(`portcullis: --shadow is for the demo: with ${config}, set policy.shadow.source there`);
  });
});
