import { mkdtemp, mkdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ensureFreshBuild } from './support/fresh-build';

describe("the tests' build of what the policy thread runs", () => {
  let root: string;
  const lines: string[] = [];
  const log = (line: string) => lines.push(line);

  beforeAll(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'portcullis-fresh-build-'));
    await mkdir(path.join(root, 'src', 'authz'), { recursive: true });
    await writeFile(
      path.join(root, 'tsconfig.build.json'),
      JSON.stringify({ compilerOptions: { outDir: 'dist', rootDir: 'src', module: 'commonjs', target: 'es2022' }, include: ['src'] }),
    );
    await writeFile(path.join(root, 'src', 'authz', 'policy-thread.ts'), 'export const revision: number = 1;\n');
    await writeFile(path.join(root, 'src', 'authz', 'thread.test.ts'), 'export {};\n');
  });

  afterAll(() => rm(root, { recursive: true, force: true }));

  it('builds when there is no build, then leaves a fresh build alone', () => {
    expect(ensureFreshBuild(root, log)).toBe(true);
    expect(lines.at(-2)).toMatch(/no build in dist/);
    expect(ensureFreshBuild(root, log)).toBe(false);
  });

  it('rebuilds once a source is newer than the build, and the build then has the change', async () => {
    const source = path.join(root, 'src', 'authz', 'policy-thread.ts');
    await writeFile(source, 'export const revision: number = 2;\n');
    // The build a minute old, the edit half a minute: mtimes in the past, so the rebuild is newer.
    const marker = path.join(root, 'dist', 'authz', 'policy-thread.js');
    await utimes(marker, new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));
    await utimes(source, new Date(Date.now() - 30_000), new Date(Date.now() - 30_000));
    expect(ensureFreshBuild(root, log)).toBe(true);
    expect(lines.at(-2)).toMatch(/older than src/);
    expect(await readFile(path.join(root, 'dist', 'authz', 'policy-thread.js'), 'utf8')).toContain('revision = 2');
  });

  it('does not rebuild for a newer test file: the build does not compile them', async () => {
    const test = path.join(root, 'src', 'authz', 'thread.test.ts');
    const later = new Date(Date.now() + 60_000);
    await utimes(test, later, later);
    expect(ensureFreshBuild(root, log)).toBe(false);
  });
});
