// The layering of src/ (conventions: imports only point down) is enforced by ESLint, with the
// import-x/no-restricted-paths zones of eslint.config.mjs. These tests show that the rule bites:
// probe modules, linted with the project's config as if they sat in a layer, get an error for an
// import that points up, and none for one that points down.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { expect } from '@jest/globals';
import { projectRoot } from '../src/project-root';

interface Probe {
  filePath: string;
  code: string;
}

interface LintMessage {
  ruleId: string | null;
  line: number;
  message: string;
}

/** A module at `filePath` that imports `name` from `from`, and uses it. */
const importing = (filePath: string, from: string, name: string): Probe => ({
  filePath,
  code: `import { ${name} } from '${from}';\nexport const probe = ${name};\n`,
});

const PROBES = {
  httpToPipeline: importing('src/http/probe.ts', '../gateway/request-pipeline', 'RequestPipeline'),
  stageToCli: importing('src/audit/probe.ts', '../cli/main', 'main'),
  pipelineToCompositionRoot: importing('src/gateway/probe.ts', '../app', 'Portcullis'),
  directoryServiceToPolicy: importing('src/directory-service/probe.ts', '../authz/policy-explainer', 'PolicyExplainer'),
  baseToHttp: importing('src/base/probe.ts', '../http/problem', 'errorProblem'),
  baseToDb: importing('src/base/probe.ts', '../db/uuid', 'isUuid'),
  pipelineToPolicy: importing('src/gateway/probe.ts', '../authz/wasm-policy-engine', 'WasmPolicyEngine'),
};
type ProbeName = keyof typeof PROBES;

/** Lints every probe in one child process (Jest's module sandbox cannot load the ES-module config). */
function lintProbes(probes: Probe[]): Promise<LintMessage[][]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(projectRoot, 'test', 'support', 'lint-probes.mjs')], { cwd: projectRoot });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0 ? resolve(JSON.parse(stdout) as LintMessage[][]) : reject(new Error(`lint-probes.mjs exited with ${code}: ${stderr}`)),
    );
    child.stdin.end(JSON.stringify(probes));
  });
}

let messages: Record<ProbeName, LintMessage[]>;

beforeAll(async () => {
  const names = Object.keys(PROBES) as ProbeName[];
  const results = await lintProbes(names.map((name) => PROBES[name]));
  messages = Object.fromEntries(names.map((name, i) => [name, results[i]!])) as Record<ProbeName, LintMessage[]>;
});

/** Exactly one message: the layering rule's, on the import, with the zone's reason. */
const refused = (reason: string) => [{ ruleId: 'import-x/no-restricted-paths', line: 1, message: expect.stringContaining(reason) }];

describe('the layers of src/, as the lint rule enforces them', () => {
  it('refuses an import of the pipeline from the HTTP primitives', () => {
    expect(messages.httpToPipeline).toEqual(refused('src/http holds the HTTP primitives: it builds on src/base alone.'));
  });

  it('refuses an import of the CLI from a stage', () => {
    expect(messages.stageToCli).toEqual(refused('A stage never imports the pipeline (src/gateway) or what stands beside the gateway.'));
  });

  it('refuses an import of the composition root from the pipeline', () => {
    expect(messages.pipelineToCompositionRoot).toEqual(refused('The pipeline never imports the composition root'));
  });

  it('refuses an import of the stages that decide from the directory service', () => {
    expect(messages.directoryServiceToPolicy).toEqual(refused('The directory service is an upstream of its own'));
  });

  it('refuses any import into the base errors from another part of src/', () => {
    expect(messages.baseToHttp).toEqual(refused('src/base is the bottom layer: it imports no other part of src/.'));
    expect(messages.baseToDb).toEqual(refused('src/base is the bottom layer: it imports no other part of src/.'));
  });

  it('allows an import that points down: the pipeline importing a stage', () => {
    // No message at all: the import resolved (import-x/no-unresolved is on for the probes) and is allowed.
    expect(messages.pipelineToPolicy).toEqual([]);
  });
});
