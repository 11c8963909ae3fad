// The directory source's watch as editors use it: what it reports as changed (files, folders
// moved in and out), what it never reports (swap files, backups, locks, tests), and the change
// list a reload logs.
import { mkdir, rename, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { scratchDir, testOpa } from '../../test/support/policy-workspace';
import { waitFor } from '../../test/support/wait-for';
import { fileChanges, isEditorScratch, openPolicySource, type PolicySource } from './policy-loader';

let dir: string;

beforeAll(async () => {
  dir = await scratchDir('loader');
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Watches `source`, keeping what each change reports; an error from the watch fails the test. */
function collectChanges(source: PolicySource): { calls: string[][]; stop: () => void } {
  const calls: string[][] = [];
  const stop = source.watch(
    (changed) => calls.push(changed),
    (error) => {
      throw error;
    },
  );
  return { calls, stop };
}

describe('the directory source', () => {
  it('reports the policy files that changed and never the editor scratch files beside them', async () => {
    const source = path.join(dir, 'policies');
    await mkdir(source);
    await writeFile(path.join(source, 'policy.rego'), 'package portcullis\n\ndecision := {"allow": false, "status": 403, "reasons": []}\n');
    const opened = await openPolicySource({
      source,
      entrypoint: 'portcullis/decision',
      buildDir: path.join(dir, 'build'),
      toolchain: { opaBin: testOpa() },
      pollIntervalMs: 60_000,
    });
    const { calls, stop } = collectChanges(opened);
    try {
      for (const name of ['.policy.rego.swp', '.policy.rego.swx', 'policy.rego~', '#policy.rego#', '4913', 'policy_test.rego'])
        await writeFile(path.join(source, name), 'x');
      await symlink('me@host.1:1', path.join(source, '.#policy.rego'));
      await writeFile(
        path.join(source, 'policy.rego'),
        'package portcullis\n\ndecision := {"allow": true, "status": 200, "reasons": []}\n',
      );
      await waitFor(() => (calls.length > 0 ? true : undefined), { timeoutMs: 5000, what: 'the change' });
      expect(calls[0]).toEqual(['policy.rego']);
    } finally {
      stop();
    }
  });
  it('reports a folder of policies moved away and moved back, whose files themselves never changed', async () => {
    const source = path.join(dir, 'moving');
    await mkdir(path.join(source, 'rules'), { recursive: true });
    await writeFile(path.join(source, 'rules', 'rule.rego'), 'package rules\n\nx := 1\n');
    const opened = await openPolicySource({
      source,
      entrypoint: 'rules/x',
      buildDir: path.join(dir, 'build-moving'),
      toolchain: { opaBin: testOpa() },
      pollIntervalMs: 60_000,
    });
    const { calls, stop } = collectChanges(opened);
    try {
      // The subfolder's watch begins asynchronously: a change in it proves it is watched. One
      // written before the watch began is not seen, so a new one is written until one is, each
      // long enough after the last for the watcher's debounce (150 ms) to report it.
      let version = 2;
      await waitFor(
        async () => {
          if (calls.some((names) => names.includes(path.join('rules', 'rule.rego')))) return true;
          await writeFile(path.join(source, 'rules', 'rule.rego'), `package rules\n\nx := ${version++}\n`);
          return undefined;
        },
        { timeoutMs: 5000, everyMs: 500, what: 'the change in the subfolder' },
      );
      calls.length = 0;
      await rename(path.join(source, 'rules'), path.join(dir, 'rules-away'));
      await waitFor(() => (calls.some((names) => names.includes(`rules${path.sep}`)) ? true : undefined), {
        timeoutMs: 5000,
        what: 'the folder moved away',
      });
      calls.length = 0;
      await rename(path.join(dir, 'rules-away'), path.join(source, 'rules'));
      await waitFor(() => (calls.some((names) => names.includes(`rules${path.sep}`)) ? true : undefined), {
        timeoutMs: 5000,
        what: 'the folder moved back',
      });
    } finally {
      stop();
    }
  });
});

describe('isEditorScratch', () => {
  it.each(['.a.rego.swp', '.a.rego.swo', '.a.rego.swx', 'a.rego~', '#a.rego#', '.#a.rego', '4913', 'sub/.#a.rego'])(
    'treats %s as scratch',
    (name) => {
      expect(isEditorScratch(name)).toBe(true);
    },
  );
  it.each(['a.rego', 'data.json', 'swp.rego', 'a#b.rego'])('treats %s as a policy file', (name) => {
    expect(isEditorScratch(name)).toBe(false);
  });
});

describe('fileChanges', () => {
  it('names each file changed, added or removed, sorted', () => {
    const before = new Map([
      ['a.rego', '1'],
      ['b.rego', '2'],
      ['c/data.json', '3'],
    ]);
    const after = new Map([
      ['a.rego', '1'],
      ['b.rego', '9'],
      ['d.rego', '4'],
    ]);
    expect(fileChanges(before, after)).toEqual(['b.rego changed', 'c/data.json removed', 'd.rego added']);
  });
});
