// The README's tutorials, run as a reader runs them: every ```sh block under "Tutorial: ship a
// rule" and "Tutorial: answer an auditor" is pasted into bash, in order, in a copy of the
// project (so its edits of policies/ touch the copy), against a real demo that the tutorial's
// own `npm start` line starts there; what each block prints is checked.
import { spawn, execFile, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { cp, mkdir, readFile, rm, symlink } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { projectRoot } from '../src/project-root';
import { requireBuild } from './support/cli-process';
import { scratchDir } from './support/policy-workspace';
import { waitFor } from './support/wait-for';

const run = promisify(execFile);

/** The ```sh blocks of the README section under `heading`, up to the next heading of its level or above. */
function tutorialBlocks(readme: string, heading: string): string[] {
  const start = readme.indexOf(`\n${heading}\n`);
  if (start < 0) throw new Error(`README.md has no heading "${heading}"`);
  const rest = readme.slice(start + heading.length + 2);
  const end = rest.search(/^#{1,3} /m);
  const section = end < 0 ? rest : rest.slice(0, end);
  return [...section.matchAll(/^```sh\n([\s\S]*?)^```$/gm)].map((match) => match[1]!);
}

/**
 * A copy of the project a reader works in: its own policies/ (edited by the tutorial), its own
 * compiled dist/ and bin/ (so the project root, and with it policies/ and .portcullis/, is the
 * copy), the rest linked.
 */
async function projectCopy(): Promise<string> {
  const dir = path.join(await scratchDir('tutorials'), 'project');
  await mkdir(dir);
  for (const name of ['package.json', 'bin', 'dist', 'policies'])
    await cp(path.join(projectRoot, name), path.join(dir, name), { recursive: true });
  for (const name of ['node_modules', 'migrations', 'src']) await symlink(path.join(projectRoot, name), path.join(dir, name));
  return dir;
}

/** The environment of the reader's shell: the pinned opa, and no configuration or database of the developer's. */
function shellEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PORTCULLIS_CONFIG: '',
    PORTCULLIS_STATE_DIR: '',
    OPA_BIN: process.env.PORTCULLIS_TEST_OPA,
    ...extra,
  };
  delete env.DATABASE_URL;
  return env;
}

// `npx portcullis` runs the project's own bin (package.json "bin"); the function does the same
// without npm's lookup, which in a copy without an installed lockfile would go to the registry.
const NPX = 'npx() { if [ "$1" = portcullis ]; then shift; node "$PWD/bin/portcullis.js" "$@"; else command npx "$@"; fi; }';
const MARK = (index: number) => `::block ${index}::`;

/** Runs blocks in one bash, as pasted in order into one shell; returns what each printed (stderr included). */
async function paste(cwd: string, blocks: string[], prelude: string, env: NodeJS.ProcessEnv): Promise<string[]> {
  const script = ['exec 2>&1', NPX, prelude, ...blocks.flatMap((block, index) => [`echo '${MARK(index)}'`, block])].join('\n');
  const { stdout } = await run('bash', ['-c', script], { cwd, env, maxBuffer: 16 * 1024 * 1024 });
  return blocks.map((_, index) => {
    const from = stdout.indexOf(`${MARK(index)}\n`);
    const to = index + 1 < blocks.length ? stdout.indexOf(`${MARK(index + 1)}\n`) : stdout.length;
    return stdout.slice(from + MARK(index).length + 1, to);
  });
}

/** The number in `tests: N passed, 0 failed`, failing the test on any failure. */
function passedTests(output: string): number[] {
  const counts = [...output.matchAll(/^tests: (\d+) passed, (\d+) failed/gm)];
  expect(counts.map((match) => Number(match[2]))).toEqual(counts.map(() => 0));
  return counts.map((match) => Number(match[1]));
}

let project: string;
let demo: { child: ChildProcessWithoutNullStreams; output: () => string } | undefined;
/** What each block printed: those before the demo starts, those after it, and the auditor's. */
let before: string[];
let ship: string[];
let auditor: string[];

beforeAll(async () => {
  requireBuild();
  const readme = await readFile(path.join(projectRoot, 'README.md'), 'utf8');
  const shipBlocks = tutorialBlocks(readme, '### Tutorial: ship a rule');
  const auditorBlocks = tutorialBlocks(readme, '### Tutorial: answer an auditor');
  project = await projectCopy();

  // The blocks before the demo starts, then the demo as the tutorial starts it, then the rest.
  const startAt = shipBlocks.findIndex((block) => block.trim().startsWith('npm start'));
  expect(shipBlocks[startAt]?.trim()).toBe('npm start -- --shadow policies-next');
  const packageJson = JSON.parse(await readFile(path.join(project, 'package.json'), 'utf8')) as { scripts: { start: string } };
  expect(packageJson.scripts.start).toBe('node bin/portcullis.js start');
  before = await paste(project, shipBlocks.slice(0, startAt), '', shellEnv());

  const child = spawn(process.execPath, [path.join(project, 'bin', 'portcullis.js'), 'start', '--shadow', 'policies-next'], {
    cwd: project,
    env: shellEnv(),
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  demo = { child, output: () => output };
  const exited = new Promise<never>((_, reject) =>
    child.on('close', (code) => reject(new Error(`the demo exited with ${code}:\n${output}`))),
  );
  await Promise.race([waitFor(() => output.includes('Press Ctrl-C to stop everything.'), { timeoutMs: 60_000, what: 'the demo' }), exited]);

  // What the reader pastes from the banner: its export lines, and the URLs of its ready line.
  const ready = /gateway (http:\/\/[0-9.:]+), admin (http:\/\/[0-9.:]+)/.exec(output)!;
  const exports = output
    .split('\n')
    .filter((line) => line.startsWith('export '))
    .join('\n');
  const after = shipBlocks.slice(startAt + 1);
  const outputs = await paste(project, [...after, ...auditorBlocks], exports, shellEnv({ GATEWAY: ready[1], ADMIN: ready[2] }));
  ship = outputs.slice(0, after.length);
  auditor = outputs.slice(after.length);
}, 120_000);

afterAll(async () => {
  if (demo && demo.child.exitCode === null) {
    const closed = new Promise((resolve) => demo!.child.on('close', resolve));
    demo.child.kill('SIGINT');
    await closed;
  }
  if (project) await rm(path.dirname(project), { recursive: true, force: true });
}, 30_000);

describe('README tutorial: ship a rule', () => {
  it('writes the auditors rule in a candidate copy whose tests pass with full coverage', () => {
    const [candidate] = before;
    expect(candidate).toContain('patching file policies-next/organization.rego');
    expect(passedTests(candidate!)).toHaveLength(1);
    expect(candidate).toMatch(/^coverage 100\.0 % {2}organization\.rego$/m);
  });

  it('shows the shadow candidate allowing what the shipped policy denies, in explain, disagreements and replay', () => {
    const out = ship[0]!;
    expect(out.startsWith('201\n201\n')).toBe(true);
    const denial = JSON.parse(out.split('\n')[2]!) as { status: number; code: string; decision_id: string };
    expect(denial).toMatchObject({ status: 403, code: 'missing_permission' });
    expect(out).toMatch(/^decision {4}DENY 403 /m);
    expect(out).toMatch(/^shadow {6}ALLOW 200 {2}\(policy sha256:[0-9a-f]+\) DISAGREES$/m);
    expect(out).toMatch(
      new RegExp(
        `${denial.decision_id}  demo\\|bob  GET /orgs/acme/credentials  deny 403  allow 200  team 'auditors' reads everything in organization 'acme'`,
      ),
    );
    expect(out).toMatch(/: 1 changed \(1 allow flip, 0 status changes, 0 evaluation errors\)/);
    expect(out).toMatch(new RegExp(`deny→allow +1 decision +credential:read +org acme[\\s\\S]*e\\.g\\. ${denial.decision_id}`));
  });

  it('ships it with the gateway running, and turns the real decision that follows into a regression test', async () => {
    const out = ship[1]!;
    expect(out).toMatch(/^\{"status":"(loaded|unchanged)","revision":"sha256:[0-9a-f]+"/);
    expect(out).toMatch(
      /demo\|bob +acme +credential:read +GET \/orgs\/acme\/credentials +allow 200 +auditor_read +team 'auditors' reads everything in organization 'acme'/,
    );
    const regression = await readFile(path.join(project, 'policies', 'regression_auditor_read_test.rego'), 'utf8');
    expect(regression).toMatch(/^package portcullis_regression_test\n/);
    expect(regression).toContain('result.allow == true');
    // The candidate's two tests came with the rule; the regression test is one more.
    expect(passedTests(out)).toEqual([passedTests(before[0]!)[0]! + 1]);
  });

  it('adds the Friday rule with the gateway running, and explain --at judges a deletion on a Friday and on a Thursday', () => {
    const out = ship[2]!;
    expect(out).toContain('patching file policies/organization.rego');
    expect(passedTests(out)).toEqual([passedTests(before[0]!)[0]! + 4]);
    expect(out).toMatch(/\{"status":"(loaded|unchanged)"/);
    expect(out).toMatch(/^201$/m);
    const explained = out.split(/^(?=DELETE \/orgs\/acme\/projects\/web as )/m).slice(1);
    expect(explained).toHaveLength(3);
    const [bobOnFriday, bobOnThursday, aliceOnFriday] = explained as [string, string, string];
    expect(bobOnFriday).toContain('time        2026-12-04T10:00:00.000Z (Friday, UTC)');
    expect(bobOnFriday).toMatch(
      /^decision {4}DENY 403 .*\n {2}- projects are not deleted on Fridays \(UTC\), except by organization-admins$/m,
    );
    expect(bobOnThursday).toContain('time        2026-12-03T10:00:00.000Z (Thursday, UTC)');
    expect(bobOnThursday).toMatch(/^decision {4}ALLOW 200 .*\n {2}- granted by permission 'project:\*' in organization 'acme'$/m);
    expect(aliceOnFriday).toMatch(/^decision {4}ALLOW 200 .*\n {2}- granted by permission '\*' in organization 'acme'$/m);
  });

  it('refuses an --at that is not an RFC 3339 date-time, naming the flag', async () => {
    const failed = await run(
      'bash',
      ['-c', `${NPX}\nnpx portcullis explain --as 'demo|bob' --at 2026-12-04 DELETE /orgs/acme/projects/web`],
      { cwd: project, env: shellEnv() },
    ).catch((error: { code: number; stderr: string }) => error);
    expect(failed).toMatchObject({
      code: 1,
      stderr: 'portcullis: --at: "2026-12-04" is not an RFC 3339 date-time with an offset, e.g. 2026-12-04T10:00:00Z\n',
    });
  });
});

describe('README tutorial: answer an auditor', () => {
  it('counts the last hour’s denials by reason code', () => {
    expect(auditor[0]).toMatch(/^missing_permission +1 +0 +1$/m);
    expect(auditor[0]).toMatch(/^total +1 +0 +1$/m);
  });

  it('lists everything bob did, served requests only', () => {
    const out = auditor[1]!;
    expect(out).toMatch(/demo\|bob +acme +credential:read +GET \/orgs\/acme\/credentials +allow 200 /);
    expect(out).toMatch(/demo\|bob +acme +credential:read +GET \/orgs\/acme\/credentials +deny 403 /);
    expect(out).toMatch(/demo\|bob +- +profile:read +GET \/users\/me +allow 200 /);
    expect(out).not.toContain('dry run');
  });

  it('exports the day, verifies it offline, and names the record edited in a copy', () => {
    const out = auditor[2]!;
    expect(out).toMatch(
      /^verified \d+ decision records in day\.ndjson \(ndjson, seq 1 to \d+, head hash [0-9a-f]{64}\): the export is intact/m,
    );
    expect(out).toMatch(/^portcullis: the export is broken at line \d+ \(seq \d+\): content edited: the hash does not match the record/m);
    expect(out).toMatch(/^exit 1$/m);
  });
});
