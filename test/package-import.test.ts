// The package as a user's project gets it: `npm pack` of this checkout (its built dist/),
// installed into a temporary project, then `require('portcullis')` and a type-check of a
// TypeScript caller against the shipped declarations.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect } from '@jest/globals';

const run = promisify(execFile);
const ROOT = path.join(__dirname, '..');
const TSC = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');

jest.setTimeout(180_000);

let project: string;
/** What `npm pack` put in the tarball. */
let files: string[];

beforeAll(async () => {
  // `npm test` builds before jest; npm pack's own build (prepare) is skipped so dist/ is not rewritten under other tests.
  if (!existsSync(path.join(ROOT, 'dist', 'index.js'))) throw new Error('dist/index.js is missing: run `npm run build` first');
  project = await mkdtemp(path.join(os.tmpdir(), 'portcullis-consumer-'));
  await writeFile(path.join(project, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }));
  const { stdout } = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', project], { cwd: ROOT });
  const [packed] = JSON.parse(stdout) as Array<{ filename: string; files: Array<{ path: string }> }>;
  files = packed!.files.map((file) => file.path);
  // From the npm cache where it can: the registry is asked only for what the cache lacks.
  await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts', path.join(project, packed!.filename)], {
    cwd: project,
  });
});
afterAll(async () => {
  if (project) await rm(project, { recursive: true, force: true });
});

it('packs the built library with its declarations, and no TypeScript sources or tests', () => {
  expect(files).toEqual(expect.arrayContaining(['package.json', 'dist/index.js', 'dist/index.d.ts', 'dist/app.d.ts', 'bin/portcullis.js']));
  const sourcesOrTests = files.filter(
    (file) => (file.endsWith('.ts') && !file.endsWith('.d.ts')) || file.startsWith('test/') || file.includes('.test.'),
  );
  expect(sourcesOrTests).toEqual([]);
});

it("require('portcullis') gives createPortcullis, which validates its settings with the config schema, and createExpressServer", async () => {
  const script = `
    const portcullis = require('portcullis');
    console.log(JSON.stringify({ exports: Object.keys(portcullis).sort(), kind: typeof portcullis.createPortcullis }));
    portcullis.createPortcullis({ policy: { source: 'bundle.tar.gz' } }).catch((error) => console.log(error.message));
  `;
  const { stdout } = await run(process.execPath, ['-e', script], { cwd: project });
  const [first, second] = stdout.trim().split('\n');
  expect(JSON.parse(first!)).toEqual({ exports: ['createExpressServer', 'createPortcullis', 'expressServerClasses'], kind: 'function' });
  expect(second).toMatch(/^invalid configuration: .*auth: /);
  expect(require.resolve('portcullis', { paths: [project] })).toBe(path.join(project, 'node_modules', 'portcullis', 'dist', 'index.js'));
});

it('type-checks a TypeScript caller against the shipped declarations, and refuses a wrong setting', async () => {
  await writeFile(
    path.join(project, 'good.ts'),
    `import { createPortcullis, type PortcullisGate } from 'portcullis';
export const gate: Promise<PortcullisGate> = createPortcullis({
  auth: { issuer: 'https://id.example', audience: 'api', jwks_file: 'jwks.json' },
  policy: { source: 'bundle.tar.gz' },
  services: { projects: { url: 'http://127.0.0.1:7002' } },
});
export const mount = async (use: (handler: (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => void) => void) => use((await gate).middleware);
`,
  );
  await writeFile(
    path.join(project, 'bad.ts'),
    `import { createPortcullis } from 'portcullis';\nvoid createPortcullis({ auth: { issuer: 1 } });\n`,
  );
  const tsc = (file: string) =>
    run(
      process.execPath,
      [
        TSC,
        '--noEmit',
        '--strict',
        '--module',
        'node16',
        '--moduleResolution',
        'node16',
        '--skipLibCheck',
        '--typeRoots',
        path.join(ROOT, 'node_modules', '@types'),
        '--types',
        'node',
        file,
      ],
      {
        cwd: project,
      },
    );
  await expect(tsc('good.ts')).resolves.toBeDefined();
  await expect(tsc('bad.ts')).rejects.toMatchObject({
    stdout: expect.stringContaining("Type 'number' is not assignable to type 'string'"),
  });
});
