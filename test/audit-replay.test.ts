// What a policy change would have done, before it ships: `decisions replay` against recorded
// traffic (allow flips, status changes and evaluation errors, grouped by the revision that
// recorded them, with examples; dry runs left out; --fail-on-change for CI), and
// `decisions to-test` pinning recorded decisions as `opa test` cases that really run.
import { execFile } from 'node:child_process';
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { prepareDecision } from '../src/audit/chain/decision-chain';
import { PgDecisionStore } from '../src/audit/chain/pg-decision-store';
import { INPUT_SQL } from '../src/audit/store/pg-decision-query-store';
import { projectRoot } from '../src/project-root';
import { syntheticDecision, TEST_CHAIN } from './support/audit-helpers';
import { requireBuild, runCli } from './support/cli-process';
import { seedDirectory } from './support/directory-fixtures';
import { startHarness, type Harness } from './support/gateway-harness';
import { waitFor } from './support/wait-for';

const execFileAsync = promisify(execFile);
const ADMIN_TOKEN = 'test-admin-token-0123456789';

let h: Harness;
let scratch: string;
let candidate: string;
/** The revision of the policy the harness serves, which recorded the requests. */
let servingRevision: string;
/** The reasons the serving policy recorded for a decision, as replay prints them. */
let recordedReason: (id: string) => Promise<string>;
const ids: Record<string, string[]> = {};

async function send(name: string, path: string, token: string | undefined, method = 'GET'): Promise<void> {
  const res = await h.request(path, { method, ...(token ? { token } : {}) });
  await res.arrayBuffer();
  (ids[name] ??= []).push(res.headers.get('x-portcullis-decision')!);
}

beforeAll(async () => {
  requireBuild();
  scratch = await mkdtemp(path.join(os.tmpdir(), 'portcullis-replay-test-'));
  h = await startHarness();
  await seedDirectory(h.database.db);
  const [alice, bob, carol, dave] = await Promise.all(['alice|sub', 'bob|sub', 'carol|sub', 'dave|sub'].map((sub) => h.tokens.sign(sub)));
  await send('aliceReadsAcme', '/orgs/acme', alice);
  await send('aliceDeletesAcme', '/orgs/acme', alice, 'DELETE');
  await send('aliceDeletesAcme', '/orgs/acme', alice, 'DELETE');
  await send('daveReadsGlobex', '/orgs/globex', dave);
  await send('daveReadsGlobex', '/orgs/globex', dave);
  await send('bobDeletesAcme', '/orgs/acme', bob, 'DELETE');
  await send('carolReadsAcme', '/orgs/acme', carol);
  await send('anonymous', '/orgs/acme', undefined);
  await send('anonymous', '/orgs/acme', undefined);
  // A dry run (admin evaluate): recorded with dry_run, and left out of replay unless asked for.
  const dryRun = await fetch(`${h.gateway.adminUrl}/admin/v1/evaluate`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ subject: 'alice|sub', method: 'DELETE', path: '/orgs/acme' }),
  });
  expect(dryRun.status).toBe(200);
  await waitFor(
    async () => {
      const res = await fetch(`${h.gateway.adminUrl}/admin/v1/audit`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
      return (
        ((await res.json()) as { backlog: number }).backlog === 0 && (await h.database.db('decisions').where({ dry_run: true }).first('id'))
      );
    },
    { timeoutMs: 15_000, what: 'the decisions to be written' },
  );
  type Row = {
    id: string;
    dry_run: boolean;
    policy_revision: string;
    reasons: string[];
    input: unknown;
    resource: Record<string, unknown>;
  };
  ids.dryRun = [(await h.database.db<Row>('decisions').where({ dry_run: true }).first('id'))!.id];
  servingRevision = (await h.database.db<Row>('decisions').where({ id: ids.aliceReadsAcme![0] }).first('policy_revision'))!.policy_revision;
  // A read of globex that an earlier policy revision recorded, with the same input.
  const daveRead = await h.database
    .db('decisions')
    .where({ id: ids.daveReadsGlobex![0] })
    .first<Pick<Row, 'input' | 'resource'>>(h.database.db.raw(`${INPUT_SQL} as input`), 'resource');
  const earlier = syntheticDecision(0, {
    time: new Date(),
    subject: 'dave|sub',
    organization: 'globex',
    action: 'organization:read',
    method: 'GET',
    path: '/orgs/globex',
    allow: true,
    status: 200,
    resource: daveRead.resource,
    input: daveRead.input,
    policyRevision: 'rev-before',
  });
  await new PgDecisionStore(h.database.db, TEST_CHAIN).append([prepareDecision(earlier)]);
  ids.earlierRevision = [earlier.id];

  // The candidate: organizations with projects may be deleted, and globex is frozen.
  // The candidate: a one-file policy (design §3.4), so the shipped policy's own wording can
  // change without touching this test. Against what the shipped policy decided: acme members
  // may do anything there (alice's deletions: deny→allow), globex is frozen (dave's reads:
  // allow→deny), non-members of acme are told 404 instead of 403 (carol: a status change),
  // and bob gets two different decisions, a conflict evaluation fails on (an error).
  candidate = path.join(scratch, 'candidate');
  await mkdir(candidate);
  await writeFile(
    path.join(candidate, 'candidate.rego'),
    [
      'package portcullis',
      '',
      'default decision := {"allow": false, "status": 403, "reasons": ["no rule allows this request"]}',
      '',
      'decision := {"allow": true, "status": 200, "reasons": ["acme members may do anything in acme"]} if {',
      '\tinput.resource.org == "acme"',
      '\tinput.subject.memberships.acme',
      '}',
      '',
      'decision := {"allow": false, "status": 404, "reasons": ["organization \'acme\' not found"]} if {',
      '\tinput.resource.org == "acme"',
      '\tnot input.subject.memberships.acme',
      '}',
      '',
      'decision := {"allow": false, "status": 403, "reasons": ["globex is frozen for an audit"]} if input.resource.org == "globex"',
      '',
      'decision := {"allow": false, "status": 403, "reasons": ["held for review"]} if input.subject.sub == "bob|sub"',
      '',
    ].join('\n'),
  );
  recordedReason = async (id: string) => (await h.database.db<Row>('decisions').where({ id }).first('reasons'))!.reasons.join('; ');
});
afterAll(async () => {
  await h?.close();
  await rm(scratch, { recursive: true, force: true });
});

const cli = (...args: string[]) => runCli(['decisions', ...args], { DATABASE_URL: h.database.url });

describe('portcullis decisions replay', () => {
  it('finds no change when the candidate is the policy that decided, and exits 0 with --fail-on-change', async () => {
    for (const policy of [path.join(projectRoot, 'policies'), process.env.PORTCULLIS_TEST_BUNDLE!]) {
      const run = await cli('replay', '--policy', policy, '--since', '1h', '--fail-on-change');
      expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
      expect(run.stdout.split('\n')[0]).toMatch(
        /^replayed 8 decisions since \S+ with policy revision \S+: 0 changed \(0 allow flips, 0 status changes, 0 evaluation errors\), 8 unchanged; 2 skipped \(no stored input, e\.g\. 401s\)$/,
      );
    }
  });

  it('reports allow flips, status changes and evaluation errors by the revision that recorded them, and exits 1 with --fail-on-change', async () => {
    const run = await cli('replay', '--policy', candidate, '--fail-on-change');
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(
      /^portcullis: 7 decisions would change with policy revision \S+ \(5 allow flips, 1 status change, 1 evaluation error\)\n$/,
    );
    const blocks = run.stdout.trim().split('\n\n');
    expect(blocks[0]).toMatch(
      /^replayed 8 decisions since \S+ with policy revision \S+: 7 changed \(5 allow flips, 1 status change, 1 evaluation error\), 1 unchanged; 2 skipped/,
    );
    expect(blocks).toHaveLength(3);
    const current = blocks[1]!.split('\n');
    expect(current[0]).toBe(
      `recorded by policy revision ${servingRevision}: 7 decisions, 6 changed (4 allow flips, 1 status change, 1 evaluation error)`,
    );
    expect(current.slice(1, 4)).toEqual(
      [
        'deny 403→error 500  1 decision  organization:delete  org acme',
        expect.stringMatching(/^ {4}error: policy error: evaluating 'portcullis\/decision' failed: .+/) as string,
        `    e.g. ${ids.bobDeletesAcme![0]}`,
      ].map((line, i) => (i === 0 ? `  ${line}` : line)),
    );
    expect(current.slice(4).join('\n')).toBe(
      [
        '  allow→deny  2 decisions  organization:read  org globex',
        '    reason: globex is frozen for an audit',
        `    e.g. ${ids.daveReadsGlobex!.join(', ')}`,
        '  deny→allow  2 decisions  organization:delete  org acme',
        `    reason: ${await recordedReason(ids.aliceDeletesAcme![0]!)}`,
        `    e.g. ${ids.aliceDeletesAcme!.join(', ')}`,
        '  403→404  1 decision  organization:read  org acme',
        "    reason: organization 'acme' not found",
        `    e.g. ${ids.carolReadsAcme![0]}`,
      ].join('\n'),
    );
    expect(blocks[2]).toBe(
      [
        'recorded by policy revision rev-before: 1 decision, 1 changed (1 allow flip, 0 status changes, 0 evaluation errors)',
        '  allow→deny  1 decision  organization:read  org globex',
        '    reason: globex is frozen for an audit',
        `    e.g. ${ids.earlierRevision![0]}`,
      ].join('\n'),
    );
  });

  it('prints the report as JSON and exits 0 without --fail-on-change', async () => {
    const run = await cli('replay', '--policy', candidate, '--format', 'json', '--org', 'acme');
    expect(run.code).toBe(0);
    const report = JSON.parse(run.stdout) as {
      revisions: unknown;
      groups: { kind: string; change: string; count: number; recordedRevision: string }[];
    };
    expect(report).toMatchObject({ replayed: 5, changed: 4, flipped: 2, statusChanged: 1, errors: 1, unchanged: 1, skipped: 2 });
    expect(report.revisions).toEqual([
      { revision: servingRevision, replayed: 5, unchanged: 1, changed: 4, flipped: 2, statusChanged: 1, errors: 1 },
    ]);
    expect(
      report.groups.map((group: { kind: string; change: string; count: number; recordedRevision: string }) => [
        group.kind,
        group.change,
        group.count,
        group.recordedRevision,
      ]),
    ).toEqual([
      ['error', 'deny 403→error 500', 1, servingRevision],
      ['flip', 'deny→allow', 2, servingRevision],
      ['status', '403→404', 1, servingRevision],
    ]);
  });

  it('leaves dry runs out unless --include-dry-runs, and replays only them with --dry-run true', async () => {
    const included = await cli('replay', '--policy', candidate, '--format', 'json', '--org', 'acme', '--include-dry-runs');
    expect(JSON.parse(included.stdout)).toMatchObject({ replayed: 6, flipped: 3 });
    const only = await cli('replay', '--policy', candidate, '--format', 'json', '--dry-run', 'true');
    const report = JSON.parse(only.stdout) as { replayed: number; groups: { change: string; examples: string[] }[] };
    expect(report.replayed).toBe(1);
    expect(report.groups).toEqual([expect.objectContaining({ change: 'deny→allow', examples: ids.dryRun }) as unknown]);
    const bad = await cli('replay', '--policy', candidate, '--dry-run', 'maybe');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--dry-run: must be true or false/);
  });

  it('exits 2, not 1, when it could not replay: a candidate that does not exist, a missing --policy, the database away', async () => {
    const absent = await cli('replay', '--policy', path.join(scratch, 'absent'), '--fail-on-change');
    expect(absent.code).toBe(2);
    expect(absent.stderr).toMatch(/--policy: .*absent does not exist/);
    const missing = await cli('replay', '--fail-on-change');
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/required option '-p, --policy <source>' not specified/);
    // A port nothing listens on.
    const away = await runCli(['decisions', 'replay', '--policy', candidate, '--fail-on-change'], {
      DATABASE_URL: 'postgres://portcullis:portcullis@127.0.0.1:1/portcullis',
    });
    expect(away.code).toBe(2);
    expect(away.stderr).toMatch(/^portcullis: .*ECONNREFUSED/m);
  });
});

describe('portcullis decisions to-test', () => {
  const opa = (...args: string[]) =>
    execFileAsync(process.env.PORTCULLIS_TEST_OPA!, args).then(
      ({ stdout }) => ({ code: 0, stdout }),
      (error: { code: number; stdout: string }) => ({ code: error.code, stdout: error.stdout }),
    );

  it('prints an opa test per decision that passes against the policy that decided and fails against one that decides otherwise', async () => {
    const pinned = [ids.aliceDeletesAcme![0]!, ids.daveReadsGlobex![0]!, ids.bobDeletesAcme![0]!];
    const run = await cli('to-test', ...pinned);
    expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
    expect(run.stdout).toMatch(/^package portcullis_regression_test\n/);
    expect(run.stdout.match(/^test_decision_[0-9a-f_]{36} if \{$/gm)).toHaveLength(3);
    expect(run.stdout).toContain('\tresult.status == 409');

    const shipped = path.join(scratch, 'shipped');
    await cp(path.join(projectRoot, 'policies'), shipped, { recursive: true });
    await writeFile(path.join(shipped, 'regression_test.rego'), run.stdout);
    await writeFile(path.join(candidate, 'regression_test.rego'), run.stdout);

    expect(await opa('fmt', '--list', path.join(shipped, 'regression_test.rego'))).toEqual({ code: 0, stdout: '' });
    const green = await opa('test', shipped, '--run', 'portcullis_regression_test', '-v');
    expect(green.code).toBe(0);
    expect(green.stdout).toMatch(/PASS: 3\/3/);
    // The pinned decisions are exactly what the candidate changes: two of the three fail there.
    const red = await opa('test', candidate, '--run', 'portcullis_regression_test');
    expect(red.code).not.toBe(0);
    expect(red.stdout).toMatch(/FAIL: 2\/3/);
  });

  it('refuses a decision that has no stored input, and an unknown id', async () => {
    const anonymous = await cli('to-test', ids.anonymous![0]!);
    expect(anonymous.code).toBe(1);
    expect(anonymous.stderr).toMatch(/has no stored input: it was refused \(401\) before the policy was asked/);
    const unknown = await cli('to-test', '00000000-0000-4000-8000-000000000000');
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/no decision 00000000-0000-4000-8000-000000000000 in the decision log/);
  });
});
