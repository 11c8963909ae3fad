// The layering of src/ (conventions: imports only point down): the gateway sequences the
// stages, the stages sit on the HTTP primitives and the base errors, and the things beside the
// gateway (admin, CLI, demo, the directory service) are never imported by what they stand on.
// Until a lint rule enforces it, this test reads every import of every module.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { projectRoot } from '../src/project-root';

const SRC = path.join(projectRoot, 'src');
const STAGES = ['routes', 'authn', 'directory', 'authz', 'audit', 'proxy'];
const BESIDE_THE_GATEWAY = ['app', 'index', 'admin', 'cli', 'demo', 'directory-service'];
const IMPORT = /(?:from|import)\s*['"](\.{1,2}\/[^'"]+)['"]/g;

function modules(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return modules(full);
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts') ? [full] : [];
  });
}

/** The top-level part of src/ a module belongs to: its folder, or its file name without `.ts`. */
function partOf(file: string): string {
  const [first, second] = path.relative(SRC, file).split(path.sep);
  return second === undefined ? first!.replace(/\.ts$/, '') : first!;
}

/** Every import between two different parts of src/, as "from-module -> imported-part". */
const edges = modules(SRC).flatMap((file) =>
  [...readFileSync(file, 'utf8').matchAll(IMPORT)]
    .map((match) => ({ from: partOf(file), to: partOf(path.resolve(path.dirname(file), match[1]!)), module: path.relative(SRC, file) }))
    .filter((edge) => edge.from !== edge.to),
);

const offending = (from: readonly string[], forbidden: readonly string[]) =>
  edges.filter((edge) => from.includes(edge.from) && forbidden.includes(edge.to)).map((edge) => `${edge.module} -> ${edge.to}`);

describe('the layers of src/', () => {
  it('reads the imports of every module', () => {
    expect(edges.length).toBeGreaterThan(50);
    expect(edges.some((edge) => edge.from === 'gateway' && STAGES.includes(edge.to))).toBe(true);
  });

  it('keeps the base errors free of every other part', () => {
    expect(edges.filter((edge) => edge.from === 'base').map((edge) => `${edge.module} -> ${edge.to}`)).toEqual([]);
  });

  it('builds the HTTP primitives on the base errors alone', () => {
    expect(edges.filter((edge) => edge.from === 'http' && edge.to !== 'base').map((edge) => `${edge.module} -> ${edge.to}`)).toEqual([]);
  });

  it('never lets a stage import the pipeline, or anything that stands beside the gateway', () => {
    expect(offending(STAGES, ['gateway', ...BESIDE_THE_GATEWAY])).toEqual([]);
  });

  it('never lets the pipeline import the composition root, the admin port, the CLI, the demo or the directory service', () => {
    expect(offending(['gateway'], BESIDE_THE_GATEWAY)).toEqual([]);
  });

  it('keeps the directory service an upstream of its own: it never imports the gateway or its stages that decide', () => {
    expect(
      offending(['directory-service'], ['gateway', 'app', 'index', 'admin', 'cli', 'demo', 'routes', 'authn', 'authz', 'proxy']),
    ).toEqual([]);
  });

  it('keeps configuration and database helpers below everything that uses them', () => {
    expect(offending(['config', 'db'], ['gateway', ...BESIDE_THE_GATEWAY])).toEqual([]);
  });
});
