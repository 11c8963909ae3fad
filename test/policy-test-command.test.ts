// `portcullis policy test` as a policy author runs it: the built CLI on a copy of the shipped
// policies, passing as shipped, failing on an unformatted file and on coverage below the minimum.
import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { requireBuild, runCli, type CliRun } from './support/cli-process';
import { copyShippedPolicies, scratchDir } from './support/policy-workspace';

function policyTest(source: string, extra: string[] = []): Promise<CliRun> {
  return runCli(['policy', 'test', '--source', source, ...extra]);
}

let work: string;

beforeAll(async () => {
  requireBuild();
  work = await scratchDir('policy-test');
});
afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

describe('portcullis policy test', () => {
  it('passes on the shipped policies and prints the coverage of every file', async () => {
    const source = await copyShippedPolicies(work, 'shipped');
    const run = await policyTest(source);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('opa check --strict: ok');
    expect(run.stdout).toContain('opa fmt --list: ok');
    for (const file of ['organization.rego', 'personal.rego', 'portcullis.rego']) expect(run.stdout).toMatch(new RegExp(`coverage +\\d+\\.\\d % {2}${file.replace('.', '\\.')}\\n`));
    expect(run.stdout).toMatch(/coverage +\d+\.\d % {2}total \(minimum 90 %\)/);
  }, 30_000);

  it('fails on an unformatted file and names it', async () => {
    const source = await copyShippedPolicies(work, 'unformatted');
    await writeFile(path.join(source, 'sloppy.rego'), 'package portcullis\n\nsloppy_rule:=   {"a":1}\n');
    const run = await policyTest(source);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('these files are not formatted (run opa fmt -w');
    expect(run.stderr).toContain(path.join(source, 'sloppy.rego'));
    expect(run.stdout).not.toContain('coverage');
  }, 30_000);

  it('fails when coverage is below the minimum, showing the file that lowers it', async () => {
    const source = await copyShippedPolicies(work, 'uncovered');
    // Sixty rules no test exercises: enough uncovered lines to pull the total under 90 %.
    const rules = Array.from({ length: 60 }, (_, n) => `untested_${n} if input.facts.flags[${n}] == true\n`).join('\n');
    await writeFile(path.join(source, 'untested.rego'), `package portcullis\n\n${rules}`);
    const run = await policyTest(source);
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(/coverage +0\.0 % {2}untested\.rego\n/);
    expect(run.stderr).toMatch(/^policy coverage \d+\.\d % is below the minimum 90 %$/m);
  }, 30_000);

  it('applies --min-coverage', async () => {
    const source = await copyShippedPolicies(work, 'strict');
    await writeFile(path.join(source, 'one_untested.rego'), 'package portcullis\n\none_untested if input.facts.flag == true\n');
    expect((await policyTest(source, ['--min-coverage', '100'])).code).toBe(1);
    expect((await policyTest(source, ['--min-coverage', '95'])).code).toBe(0);
  }, 30_000);
});
