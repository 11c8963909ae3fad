// Time-based rules and built-ins the WebAssembly runtime lacks, as a policy author meets them:
// "no project deletions on Fridays (UTC) except by organization-admins" in a workspace served
// by a gateway whose clock the test sets (the request time is in the recorded input, so a
// later evaluation of that input decides the same), and a rule using http.send refused by
// hot reload, at start, by `policy build` and by `policy test`, each naming the built-in.
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { expect } from '@jest/globals';
import pino from 'pino';
import { openPolicySource } from '../src/authz/policy-loader';
import { PolicyManager } from '../src/authz/policy-manager';
import { readBundle } from '../src/authz/policy-bundle';
import type { PolicyInput } from '../src/authz/policy-engine';
import { WasmPolicyEngine } from '../src/authz/wasm-policy-engine';
import { INPUT_SQL } from '../src/audit/store/pg-decision-query-store';
import { requireBuild, runCli } from './support/cli-process';
import { seedDirectory } from './support/directory-fixtures';
import { startHarness, type Harness } from './support/gateway-harness';
import { buildBundle, copyShippedPolicies, scratchDir, testOpa } from './support/policy-workspace';
import type { Inserted } from './support/rows';
import { waitFor } from './support/wait-for';

const ADMIN_TOKEN = 'test-admin-token-0123456789';
const FRIDAY_REASON = 'projects are not deleted on Fridays (UTC) except by an organization-admin';

// The rule as an author adds it: a package of its own in front of the shipped decision.
const FRIDAY_RULE = `package gateway

import data.portcullis

decision := {"allow": false, "status": 403, "reasons": ["${FRIDAY_REASON}"]} if {
	input.action == "project:delete"
	time.weekday(time.now_ns()) == "Friday"
	not organization_admin
} else := portcullis.decision

organization_admin if "organization-admin" in input.subject.memberships[input.resource.org].roles
`;

const FRIDAY_TESTS = `package gateway_test

import data.gateway

deletion(roles) := {
	"request": {"id": "r", "method": "DELETE", "path": "/orgs/acme/projects/api", "route": "/orgs/{org}/projects/{project}"},
	"action": "project:delete",
	"resource": {"type": "project", "org": "acme", "project": "api"},
	"subject": {"id": "u", "sub": "s", "memberships": {"acme": {"role": "default", "teams": [], "roles": roles, "permissions": ["project:delete"]}}},
	"facts": {"organization": {"exists": true}, "project": {"exists": true, "in_organization": true}},
}

test_friday_denies_a_member if {
	d := gateway.decision with input as deletion(["default"]) with time.now_ns as 1795773600000000000
	d.status == 403
}

test_friday_allows_an_admin if {
	d := gateway.decision with input as deletion(["organization-admin"]) with time.now_ns as 1795773600000000000
	d.reasons[0] != "${FRIDAY_REASON}"
}

test_thursday_leaves_it_to_the_shipped_policy if {
	d := gateway.decision with input as deletion(["default"]) with time.now_ns as 1795687200000000000
	d.reasons[0] != "${FRIDAY_REASON}"
}
`;

// The rule changed to ask a calendar service at decision time: what the WebAssembly runtime cannot do.
const CALENDAR_RULE = `package gateway

import data.portcullis

decision := {"allow": false, "status": 403, "reasons": ["project deletions are frozen today"]} if {
	input.action == "project:delete"
	time.weekday(time.now_ns()) in freeze_days
} else := portcullis.decision

# The release calendar, asked at decision time.
freeze_days := http.send({"method": "GET", "url": "http://127.0.0.1:9/freeze-days"}).body
`;
const HTTP_SEND_LINE = 11;

/** A copy of the shipped policies with the calendar rule in front, entrypoint gateway/decision. */
async function calendarWorkspace(name: string): Promise<string> {
  const source = await copyShippedPolicies(work, name);
  await writeFile(path.join(source, 'friday.rego'), CALENDAR_RULE);
  return source;
}

const THURSDAY = Date.parse('2026-11-26T10:00:00.000Z');
const FRIDAY = Date.parse('2026-11-27T10:00:00.000Z');

let work: string;
let policies: string;
let h: Harness;
let clock = THURSDAY;
let alice: string;
let bob: string;

async function adminPolicy(): Promise<{
  revision: string;
  last_error: { file: string | null; line: number | null; message: string } | null;
}> {
  const res = await fetch(`${h.gateway.adminUrl}/admin/v1/policy`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  expect(res.status).toBe(200);
  return (await res.json()) as never;
}

const deleteApi = (token: string) => h.request('/orgs/acme/projects/api', { method: 'DELETE', token });

async function recordedInput(decisionId: string): Promise<PolicyInput> {
  const row = await waitFor(
    () =>
      h.database
        .db('decisions')
        .where({ id: decisionId })
        .first<{ input: PolicyInput } | undefined>(h.database.db.raw(`${INPUT_SQL} as input`)),
    {
      timeoutMs: 5000,
      what: 'the decision record',
    },
  );
  return row.input;
}

beforeAll(async () => {
  requireBuild();
  work = await scratchDir('time-rules');
  policies = await copyShippedPolicies(work);
  await writeFile(path.join(policies, 'friday.rego'), FRIDAY_RULE);
  await writeFile(path.join(policies, 'friday_test.rego'), FRIDAY_TESTS);
  h = await startHarness({ policy: { source: policies, entrypoint: 'gateway/decision' } }, { now: () => clock });
  const directory = await seedDirectory(h.database.db);
  // bob deletes projects through his team; alice is acme's organization-admin.
  const deleter = (
    (await h.database
      .db('roles')
      .insert({ organization_id: directory.orgs.acme, name: 'project-deleter', permissions: ['project:delete'] })
      .returning('id')) as Inserted
  )[0].id;
  await h.database.db('team_roles').insert({ team_id: directory.teams.deployers, role_id: deleter });
  alice = await h.tokens.sign('alice|sub');
  bob = await h.tokens.sign('bob|sub');
});

afterAll(async () => {
  await h?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

describe('a time-based rule: no project deletions on Fridays (UTC) except by organization-admins', () => {
  it('lets a member delete on Thursday, denies him on Friday, and still lets an organization-admin delete on Friday', async () => {
    clock = THURSDAY;
    expect((await deleteApi(bob)).status).toBe(200);

    clock = FRIDAY;
    const denied = await deleteApi(bob);
    expect(denied.status).toBe(403);
    expect(((await denied.json()) as { detail: string }).detail).toBe(FRIDAY_REASON);
    expect((await deleteApi(alice)).status).toBe(200);
  });

  it('records the request time in the input, so evaluating the recorded input later decides the same', async () => {
    clock = FRIDAY;
    const denied = await deleteApi(bob);
    expect(denied.status).toBe(403);
    const input = await recordedInput(denied.headers.get('x-portcullis-decision')!);
    expect(input.request.time).toBe('2026-11-27T10:00:00.000Z');
    expect(input.request.time_ns).toBe(FRIDAY * 1_000_000);
    // Exact in the database too: nanoseconds since the epoch are past 2^53.
    const text = await h.database
      .db('decisions')
      .where({ id: denied.headers.get('x-portcullis-decision')! })
      .first<{ time_ns: string }>(h.database.db.raw(`${INPUT_SQL}->'request'->>'time_ns' as time_ns`));
    expect(text.time_ns).toBe('1795773600000000000');

    // Any day later, the recorded input gets the Friday answer from the same policy (as `decisions replay` evaluates it).
    const bundle = await buildBundle(policies, path.join(work, 'replay.tar.gz'), { entrypoint: 'gateway/decision' });
    const engine = await WasmPolicyEngine.create(await readBundle(await readFile(bundle)), 'gateway/decision');
    expect(engine.evaluate(input).decision).toEqual({ allow: false, status: 403, reasons: [FRIDAY_REASON] });
  });

  it("dry-runs at the gateway's time on the admin port", async () => {
    const explain = async () => {
      const res = await fetch(`${h.gateway.adminUrl}/admin/v1/evaluate`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ subject: 'bob|sub', method: 'DELETE', path: '/orgs/acme/projects/api' }),
      });
      expect(res.status).toBe(200);
      return (await res.json()) as { input: PolicyInput; result: { allow: boolean; reasons: string[] } };
    };
    clock = FRIDAY;
    const friday = await explain();
    expect(friday.input.request.time).toBe('2026-11-27T10:00:00.000Z');
    expect(friday.result).toMatchObject({ allow: false, reasons: [FRIDAY_REASON] });
    clock = THURSDAY;
    expect((await explain()).result.allow).toBe(true);
  });

  it('replays and pins recorded decisions at their request time: decisions replay finds no change, to-test passes on any day', async () => {
    clock = THURSDAY;
    const thursday = await deleteApi(bob);
    clock = FRIDAY;
    const friday = await deleteApi(bob);
    expect([thursday.status, friday.status]).toEqual([200, 403]);
    const ids = [thursday.headers.get('x-portcullis-decision')!, friday.headers.get('x-portcullis-decision')!];
    for (const id of ids) await recordedInput(id);
    const cli = (...args: string[]) => runCli(['decisions', ...args], { DATABASE_URL: h.database.url });

    const replay = await cli('replay', '--policy', policies, '--entrypoint', 'gateway/decision', '--since', '30d', '--fail-on-change');
    expect({ code: replay.code, stderr: replay.stderr }).toEqual({ code: 0, stderr: '' });

    const pinned = await cli('to-test', '--entrypoint', 'gateway/decision', ...ids);
    expect(pinned.code).toBe(0);
    expect(pinned.stdout).toContain(`with time.now_ns as ${THURSDAY * 1_000_000}`);
    await writeFile(path.join(policies, 'pinned_test.rego'), pinned.stdout);
    try {
      // Today is whatever day it is; the pinned Thursday allow and Friday denial hold on every one of them.
      const run = await runCli(['policy', 'test', '--source', policies, '--entrypoint', 'gateway/decision']);
      expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
    } finally {
      await rm(path.join(policies, 'pinned_test.rego'));
    }
  }, 60_000);

  it('passes policy test with the rule and its time-mocked tests', async () => {
    const run = await runCli(['policy', 'test', '--source', policies, '--entrypoint', 'gateway/decision']);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
  }, 60_000);
});

describe('a built-in the WebAssembly runtime cannot evaluate (http.send)', () => {
  it('is refused at hot reload, naming the built-in with file and line, and the last good policy keeps serving', async () => {
    const good = await adminPolicy();
    expect(good.last_error).toBeNull();
    const file = path.join(policies, 'friday.rego');
    await writeFile(file, CALENDAR_RULE);

    const failed = await waitFor(async () => (await adminPolicy()).last_error ?? undefined, {
      timeoutMs: 10_000,
      what: 'the refusal on the admin port',
    });
    expect(failed).toMatchObject({
      file,
      line: HTTP_SEND_LINE,
      message: expect.stringContaining(`built-in http.send (${file}:${HTTP_SEND_LINE})`),
    });
    expect(failed.message).toContain('which the WebAssembly runtime cannot evaluate');
    expect((await adminPolicy()).revision).toBe(good.revision);

    clock = FRIDAY;
    const res = await deleteApi(bob);
    expect(res.status).toBe(403);
    expect(((await res.json()) as { detail: string }).detail).toBe(FRIDAY_REASON);
    await writeFile(file, FRIDAY_RULE);
    await waitFor(async () => ((await adminPolicy()).last_error === null ? true : undefined), {
      timeoutMs: 10_000,
      what: 'the refusal to clear',
    });
  });

  it('is refused when the gateway starts', async () => {
    const source = await calendarWorkspace('refused-at-start');
    const opened = await openPolicySource({
      source,
      entrypoint: 'gateway/decision',
      buildDir: path.join(work, 'build-refused-at-start'),
      toolchain: { opaBin: testOpa() },
      pollIntervalMs: 60_000,
    });
    await expect(
      PolicyManager.create({ source: opened, entrypoint: 'gateway/decision', logger: pino({ level: 'silent' }) }),
    ).rejects.toThrow(
      `the policy uses built-in http.send (${path.join(source, 'friday.rego')}:${HTTP_SEND_LINE}), which the WebAssembly runtime cannot evaluate`,
    );
  });

  it('is refused by policy build (the previous bundle stays as it was) and by policy test, naming the built-in', async () => {
    const source = await calendarWorkspace('refused-by-cli');
    const where = `${path.join(source, 'friday.rego')}:${HTTP_SEND_LINE}`;
    const output = path.join(work, 'refused.tar.gz');
    await writeFile(output, 'the previous bundle');

    const build = await runCli(['policy', 'build', '--source', source, '--output', output, '--entrypoint', 'gateway/decision']);
    expect(build.code).toBe(1);
    expect(build.stderr).toContain(`the policy uses built-in http.send (${where})`);
    expect(await readFile(output, 'utf8')).toBe('the previous bundle');
    expect((await readdir(work)).filter((name) => name.startsWith('refused.tar.gz'))).toEqual(['refused.tar.gz']);

    const test = await runCli(['policy', 'test', '--source', source, '--entrypoint', 'gateway/decision']);
    expect(test.code).toBe(1);
    expect(test.stderr).toContain(`opa build -t wasm: the policy uses built-in http.send (${where})`);
    expect(test.stdout).not.toContain('tests:');
  }, 60_000);
});
