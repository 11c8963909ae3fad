// Hot reload against a running gateway whose policy.source is a directory (a copy of the
// shipped policies): saved changes serve within 2 s, however the editor saves (sed -i,
// rename-over, in place, new and deleted files and folders; swap files and locks ignored),
// each reload logs one line, the swap is atomic under traffic, a broken change leaves the last
// good policy serving with the error on the admin port, and data.json is policy data.
import { execFile } from 'node:child_process';
import { mkdir, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect } from '@jest/globals';
import pino from 'pino';
import { seedDirectory } from './support/directory-fixtures';
import { startHarness, type Harness } from './support/gateway-harness';
import { copyShippedPolicies, scratchDir } from './support/policy-workspace';
import { waitFor } from './support/wait-for';

const ADMIN_TOKEN = 'test-admin-token-0123456789';
const MISSING = "missing permission '%s' in organization '%s' (your roles there: %s)";

// A data-driven switch in front of the shipped decision, as a policy author would add one (a
// package of its own, the entrypoint gateway/decision): the Rego never changes, data.json
// turns it on and words it. A notice, when a Rego file in notices/ defines one, answers 451.
const GATEWAY = `package gateway

import data.portcullis

decision := {"allow": false, "status": 503, "reasons": [data.maintenance.message]} if {
	data.maintenance.enabled == true
} else := {"allow": false, "status": 451, "reasons": [data.notices.current]} if {
	is_string(data.notices.current)
} else := portcullis.decision
`;

let h: Harness;
let work: string;
let policies: string;
let bob: string;
/** The gateway's log, one parsed JSON object per line. */
const logLines: Array<{ msg: string; changes?: string[] }> = [];

interface PolicyView {
  revision: string;
  last_error: { file: string | null; line: number | null; message: string; at: string } | null;
}

async function adminPolicy(): Promise<PolicyView> {
  const res = await fetch(`${h.gateway.adminUrl}/admin/v1/policy`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  expect(res.status).toBe(200);
  return (await res.json()) as PolicyView;
}

async function detailOf(res: Response): Promise<string> {
  return ((await res.json()) as { detail: string }).detail;
}

const deleteAcme = () => h.request('/orgs/acme', { method: 'DELETE', token: bob });

async function editFile(file: string, edit: (text: string) => string): Promise<void> {
  const full = path.join(policies, file);
  const before = await readFile(full, 'utf8');
  const after = edit(before);
  expect(after).not.toBe(before);
  await writeFile(full, after);
}

async function recordsOf(decisionIds: string[]): Promise<Map<string, { policy_revision: string; reasons: string[] }>> {
  const rows = await waitFor(
    async () => {
      const found = await h.database.db('decisions').whereIn('id', decisionIds).select('id', 'policy_revision', 'reasons');
      return found.length === decisionIds.length ? found : undefined;
    },
    { timeoutMs: 5000, what: 'the decision records' },
  );
  return new Map(rows.map((row: { id: string; policy_revision: string; reasons: string[] }) => [row.id, row]));
}

beforeAll(async () => {
  work = await scratchDir('hot-reload');
  policies = await copyShippedPolicies(work);
  await writeFile(path.join(policies, 'gateway.rego'), GATEWAY);
  await writeFile(path.join(policies, 'data.json'), JSON.stringify({ maintenance: { enabled: false, message: 'unused' } }));
  const logger = pino({ level: 'info' }, { write: (line: string) => void logLines.push(JSON.parse(line) as { msg: string }) });
  h = await startHarness({ policy: { source: policies, entrypoint: 'gateway/decision' } }, { logger });
  await seedDirectory(h.database.db);
  bob = await h.tokens.sign('bob|sub');
});

afterAll(async () => {
  await h?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

describe('hot reload of a policy directory', () => {
  it('serves a saved .rego change within 2 s, and records the new revision with each decision', async () => {
    const res = await deleteAcme();
    expect(res.status).toBe(403);
    expect(await detailOf(res)).toBe(
      "missing permission 'organization:delete' in organization 'acme' (your roles there: default, project-creator)",
    );

    const timings: number[] = [];
    for (let edit = 1; edit <= 5; edit += 1) {
      const marker = `(edit ${edit}) `;
      const saved = performance.now();
      await editFile('organization.rego', (text) =>
        text.replace(/"(\(edit \d+\) )?missing permission '%s' in organization '%s' \(your roles there: %s\)"/, `"${marker}${MISSING}"`),
      );
      const served = await waitFor(
        async () => {
          const answer = await deleteAcme();
          return (await detailOf(answer)).startsWith(marker) ? answer : undefined;
        },
        { timeoutMs: 10_000, what: `edit ${edit} to serve` },
      );
      timings.push(performance.now() - saved);

      const { revision } = await adminPolicy();
      const decisionId = served.headers.get('x-portcullis-decision')!;
      expect((await recordsOf([decisionId])).get(decisionId)!.policy_revision).toBe(revision);
    }
    const sorted = [...timings].sort((a, b) => a - b);
    process.stderr.write(
      `policy hot reload, save -> new decision served: median ${Math.round(sorted[2]!)} ms (${timings.map((t) => Math.round(t)).join(', ')} ms)\n`,
    );
    // The requirement is 2 s; the bound is looser because the test machine is shared.
    for (const timing of timings) expect(timing).toBeLessThan(5000);
  });

  it('swaps atomically: under concurrent traffic every answer matches the revision recorded for it', async () => {
    const old = (await adminPolicy()).revision;
    const answers: Array<{ decisionId: string; detail: string }> = [];
    let stop = false;
    const client = async () => {
      while (!stop) {
        const res = await deleteAcme();
        answers.push({ decisionId: res.headers.get('x-portcullis-decision')!, detail: await detailOf(res) });
      }
    };
    const clients = Array.from({ length: 8 }, client);
    try {
      await waitFor(() => (answers.length >= 8 ? true : undefined), { timeoutMs: 5000, what: 'answers under the old revision' });
      await editFile('organization.rego', (text) => text.replace(/"(\(edit \d+\) )?missing permission/, '"(atomic) missing permission'));
      // Compiling competes with the eight clients for the CPU: the bound is generous.
      await waitFor(async () => ((await adminPolicy()).revision !== old ? true : undefined), { timeoutMs: 15_000, what: 'the reload' });
      await waitFor(() => (answers.filter((answer) => answer.detail.startsWith('(atomic) ')).length >= 8 ? true : undefined), {
        timeoutMs: 5000,
        what: 'answers under the new revision',
      });
    } finally {
      // Clients left running would starve every later test.
      stop = true;
      await Promise.all(clients);
    }

    const records = await recordsOf(answers.map((answer) => answer.decisionId));
    const current = (await adminPolicy()).revision;
    const byRevision = { [old]: 0, [current]: 0 };
    for (const answer of answers) {
      const revision = records.get(answer.decisionId)!.policy_revision;
      expect([old, current]).toContain(revision);
      expect(answer.detail.startsWith('(atomic) ')).toBe(revision === current);
      byRevision[revision]! += 1;
    }
    expect(byRevision[old]).toBeGreaterThan(0);
    expect(byRevision[current]).toBeGreaterThan(0);
  });

  it('keeps the last good policy serving when a change does not compile, and shows file, line and message on the admin port', async () => {
    const good = (await adminPolicy()).revision;
    await editFile('personal.rego', (text) => `${text}\nbroken_rule := {"allow" true}\n`);
    const failed = await waitFor(async () => (await adminPolicy()).last_error ?? undefined, {
      timeoutMs: 5000,
      what: 'the compile error on the admin port',
    });
    const lineCount = (await readFile(path.join(policies, 'personal.rego'), 'utf8')).trimEnd().split('\n').length;
    expect(failed).toEqual({
      file: path.join(policies, 'personal.rego'),
      line: lineCount,
      message: expect.stringMatching(/^rego_parse_error: /),
      at: expect.any(String),
    });
    expect((await adminPolicy()).revision).toBe(good);

    const res = await deleteAcme();
    expect(res.status).toBe(403);
    const decisionId = res.headers.get('x-portcullis-decision')!;
    expect((await recordsOf([decisionId])).get(decisionId)!.policy_revision).toBe(good);

    await editFile('personal.rego', (text) => text.replace('\nbroken_rule := {"allow" true}\n', ''));
    await waitFor(async () => ((await adminPolicy()).last_error === null ? true : undefined), {
      timeoutMs: 5000,
      what: 'the error to clear',
    });
    expect((await adminPolicy()).revision).toBe(good);
  });

  it('loads data.json as policy data: changing a value changes the decision without touching Rego', async () => {
    expect((await h.request('/orgs/acme', { token: bob })).status).toBe(200);

    await writeFile(
      path.join(policies, 'data.json'),
      JSON.stringify({ maintenance: { enabled: true, message: 'down for maintenance until 14:00' } }),
    );
    const closed = await waitFor(
      async () => {
        const res = await h.request('/orgs/acme', { token: bob });
        return res.status === 503 ? res : undefined;
      },
      { timeoutMs: 5000, what: 'the maintenance switch' },
    );
    expect(await detailOf(closed)).toBe('down for maintenance until 14:00');

    await writeFile(path.join(policies, 'data.json'), JSON.stringify({ maintenance: { enabled: false, message: 'unused' } }));
    await waitFor(async () => ((await h.request('/orgs/acme', { token: bob })).status === 200 ? true : undefined), {
      timeoutMs: 5000,
      what: 'the switch to turn off',
    });
  });
});

/** The organization.rego denial with `marker` in front of it, as the served detail starts. */
const MARKED = /"(\([a-z -]+\) )?missing permission '%s' in organization '%s' \(your roles there: %s\)"/;
const marked = (text: string, marker: string) => text.replace(MARKED, `"(${marker}) ${MISSING}"`);

/** Waits for the detail of deleting acme to satisfy `served`; resolves with the detail. */
function servedWithin(served: (detail: string) => boolean, what: string, ms = 15_000): Promise<string> {
  return waitFor(
    async () => {
      const detail = await detailOf(await deleteAcme());
      return served(detail) ? detail : undefined;
    },
    { timeoutMs: ms, what },
  );
}

const execFileAsync = promisify(execFile);

describe('hot reload however an editor saves', () => {
  const organization = () => path.join(policies, 'organization.rego');

  it('picks up sed -i (a new file renamed over the old), and every later edit of that file', async () => {
    await execFileAsync('sed', ['-i', '-E', `s/"(\\([a-z -]+\\) )?missing permission/"(sed) missing permission/`, organization()]);
    await servedWithin((detail) => detail.startsWith('(sed) '), 'the sed -i edit');
    // The watch of the replaced file's inode would see nothing from here on.
    await writeFile(organization(), marked(await readFile(organization(), 'utf8'), 'after sed'));
    await servedWithin((detail) => detail.startsWith('(after sed) '), 'the edit in place after sed -i');
    await execFileAsync('sed', ['-i', '-E', `s/"(\\([a-z -]+\\) )?missing permission/"(sed again) missing permission/`, organization()]);
    await servedWithin((detail) => detail.startsWith('(sed again) '), 'the second sed -i edit');
  });

  it('picks up a save that writes a temporary file and renames it over, then edits in place', async () => {
    const temporary = path.join(policies, 'organization.rego.tmp-save');
    await writeFile(temporary, marked(await readFile(organization(), 'utf8'), 'renamed over'));
    await rename(temporary, organization());
    await servedWithin((detail) => detail.startsWith('(renamed over) '), 'the rename-over');
    await writeFile(organization(), marked(await readFile(organization(), 'utf8'), 'in place'));
    await servedWithin((detail) => detail.startsWith('(in place) '), 'the edit in place');
  });

  it('picks up a new file in a new folder, and its deletion', async () => {
    const notices = path.join(policies, 'notices');
    await mkdir(notices);
    await writeFile(path.join(notices, 'current.rego'), 'package notices\n\ncurrent := "closed for the audit"\n');
    await servedWithin((detail) => detail === 'closed for the audit', 'the new file');
    await writeFile(path.join(notices, 'current.rego'), 'package notices\n\ncurrent := "closed until Monday"\n');
    await servedWithin((detail) => detail === 'closed until Monday', 'an edit of the new file');

    await rm(path.join(notices, 'current.rego'));
    await servedWithin((detail) => detail.includes("missing permission 'organization:delete'"), 'the deletion');
    await rm(notices, { recursive: true });
  });

  it('ignores swap files, backups and locks, and logs one line per reload: old revision, new revision, the files that changed', async () => {
    const before = (await adminPolicy()).revision;
    await writeFile(path.join(policies, '.organization.rego.swp'), 'vim swap');
    await writeFile(path.join(policies, '4913'), '');
    await writeFile(path.join(policies, 'organization.rego~'), 'backup');
    await writeFile(path.join(policies, '#organization.rego#'), 'emacs autosave');
    // An emacs lock: a symlink to nowhere, which `opa build` of the folder would fail on.
    await symlink('bob@host.4242:1700000000', path.join(policies, '.#organization.rego'));
    const logged = logLines.length;
    await writeFile(organization(), marked(await readFile(organization(), 'utf8'), 'beside swap files'));
    await servedWithin((detail) => detail.startsWith('(beside swap files) '), 'the edit beside swap files');

    const after = (await adminPolicy()).revision;
    expect((await adminPolicy()).last_error).toBeNull();
    // One line for the reload, and nothing else about policies.
    const lines = logLines.slice(logged).filter((line) => /polic/.test(line.msg));
    expect(lines.map((line) => line.msg)).toEqual([`policy reloaded: ${before} → ${after} (organization.rego changed)`]);
    for (const name of ['.organization.rego.swp', '4913', 'organization.rego~', '#organization.rego#', '.#organization.rego'])
      await rm(path.join(policies, name));
  });
});
