// `portcullis policy test` as a policy author runs it: the built CLI on copies of the shipped
// policies. It passes as shipped; fails on an unformatted file; enforces coverage per policy
// file (tests left out of the table) and lists uncovered lines as file:line-line; prints the
// failures and a summary in a stable order, and every test with --verbose.
import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { requireBuild, runCli, type CliRun } from './support/cli-process';
import { copyShippedPolicies, scratchDir } from './support/policy-workspace';

function policyTest(source: string, extra: string[] = []): Promise<CliRun> {
  return runCli(['policy', 'test', '--source', source, ...extra]);
}

/** One rule of 19 covered lines and one uncovered line: 95 % for its file, so the total stays high. */
async function addWideRule(source: string): Promise<void> {
  const conditions = Array.from({ length: 18 }, (_, n) => `\tinput.v${n} == ${n}`).join('\n');
  await writeFile(path.join(source, 'wide.rego'), `package wide\n\nall_set if {\n${conditions}\n}\n\nnever if input.never == true\n`);
  const input = Array.from({ length: 18 }, (_, n) => `"v${n}": ${n}`).join(', ');
  await writeFile(
    path.join(source, 'wide_test.rego'),
    `package wide_test\n\nimport data.wide\n\ntest_all_set if wide.all_set with input as {${input}}\n`,
  );
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
  it('passes on the shipped policies: checks, a summary, and the coverage of every policy file with test files left out', async () => {
    const source = await copyShippedPolicies(work, 'shipped');
    const run = await policyTest(source);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const lines = run.stdout.trimEnd().split('\n');
    expect(lines.slice(0, 3)).toEqual(['opa check --strict: ok', 'opa fmt --list: ok', 'opa build -t wasm: ok (the gateway can load it)']);
    expect(lines[3]).toMatch(/^tests: \d+ passed, 0 failed, 0 skipped$/);
    // Only the failures are listed by default: there are none.
    expect(run.stdout).not.toMatch(/^PASS /m);
    const table = lines.slice(4);
    expect(table.filter((line) => line.includes('_test.rego'))).toEqual([]);
    for (const file of ['organization.rego', 'personal.rego', 'portcullis.rego']) expect(table).toContain(`coverage 100.0 %  ${file}`);
    expect(table.at(-1)).toBe('coverage 100.0 %  total (minimum 90 % per file)');
    // The table is sorted, so two runs print the same.
    expect((await policyTest(source)).stdout).toBe(run.stdout);
  }, 60_000);

  it('fails on an unformatted file and names it', async () => {
    const source = await copyShippedPolicies(work, 'unformatted');
    await writeFile(path.join(source, 'sloppy.rego'), 'package portcullis\n\nsloppy_rule:=   {"a":1}\n');
    const run = await policyTest(source);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('these files are not formatted (run opa fmt -w');
    expect(run.stderr).toContain(path.join(source, 'sloppy.rego'));
    expect(run.stdout).not.toContain('coverage');
  }, 60_000);

  it('fails when one policy file is below the minimum though the total is above it, listing its uncovered lines as file:line-line', async () => {
    const source = await copyShippedPolicies(work, 'uncovered');
    await writeFile(
      path.join(source, 'untested.rego'),
      'package portcullis\n\nuntested_a if input.facts.flags[0] == true\n\nuntested_b if {\n\tinput.facts.flags[1] == true\n\tinput.facts.flags[2] == true\n}\n',
    );
    const run = await policyTest(source);
    expect(run.code).toBe(1);
    const file = path.join(source, 'untested.rego');
    expect(run.stdout).toContain(`coverage   0.0 %  untested.rego\n  not covered: ${file}:3, ${file}:5-7\n`);
    const total = Number(/^coverage +(\d+\.\d) % {2}total \(minimum 90 % per file\)$/m.exec(run.stdout)?.[1]);
    expect(total).toBeGreaterThan(90);
    expect(run.stderr.trim()).toBe(`policy coverage is below the minimum 90 % in ${file} 0.0 %`);
  }, 60_000);

  it('applies --min-coverage to each policy file', async () => {
    const source = await copyShippedPolicies(work, 'strict');
    await addWideRule(source);
    const strict = await policyTest(source, ['--min-coverage', '100']);
    expect(strict.code).toBe(1);
    expect(strict.stdout).toContain(`coverage  95.0 %  wide.rego\n  not covered: ${path.join(source, 'wide.rego')}:24\n`);
    expect(strict.stderr.trim()).toBe(`policy coverage is below the minimum 100 % in ${path.join(source, 'wide.rego')} 95.0 %`);
    expect((await policyTest(source, ['--min-coverage', '95'])).code).toBe(0);
  }, 60_000);

  it('prints only the failures (with what they printed) and a summary, in file and line order; --verbose lists every test', async () => {
    const source = await copyShippedPolicies(work, 'failing');
    await addWideRule(source);
    await writeFile(
      path.join(source, 'zz_failing_test.rego'),
      'package wide_test\n\nimport data.wide\n\ntest_needs_every_value if {\n\tprint("checking without v0")\n\twide.all_set with input as {"v1": 1}\n}\n\ntodo_test_later := true\n',
    );
    await writeFile(
      path.join(source, 'aa_failing_test.rego'),
      'package wide_test\n\ntest_never_fires if data.wide.never with input as {"never": false}\n',
    );
    const run = await policyTest(source);
    expect(run.code).toBe(1);
    const aa = path.join(source, 'aa_failing_test.rego');
    const zz = path.join(source, 'zz_failing_test.rego');
    expect(run.stdout.split('\n').slice(3)).toEqual([
      `FAIL  ${aa}:3 data.wide_test.test_never_fires`,
      `FAIL  ${zz}:5 data.wide_test.test_needs_every_value`,
      '      checking without v0',
      expect.stringMatching(/^tests: \d+ passed, 2 failed, 1 skipped$/),
      '',
    ]);
    expect(run.stderr.trim()).toMatch(
      new RegExp(`^2 of \\d+ policy tests failed \\(trace one with: opa test ${source} --run NAME --explain fails\\)$`),
    );
    expect(run.stdout).not.toContain('coverage');

    const verbose = await policyTest(source, ['--verbose']);
    const listed = verbose.stdout.split('\n').filter((line) => /^(PASS|FAIL|SKIP|ERROR) /.test(line));
    expect(listed.length).toBeGreaterThan(20);
    expect(listed).toContain(`PASS  ${path.join(source, 'wide_test.rego')}:5 data.wide_test.test_all_set`);
    expect(listed).toContain(`SKIP  ${zz}:10 data.wide_test.todo_test_later`);
    // Sorted by file, then line: the same order every run, whatever order opa ran them in.
    const files = listed.map((line) => line.split(' ').filter(Boolean)[1]!);
    const sorted = [...files].sort((a, b) => {
      const [fa, la] = [a.slice(0, a.lastIndexOf(':')), Number(a.slice(a.lastIndexOf(':') + 1))];
      const [fb, lb] = [b.slice(0, b.lastIndexOf(':')), Number(b.slice(b.lastIndexOf(':') + 1))];
      return fa.localeCompare(fb) || la - lb;
    });
    expect(files).toEqual(sorted);
    expect((await policyTest(source, ['--verbose'])).stdout).toBe(verbose.stdout);
  }, 60_000);
});
