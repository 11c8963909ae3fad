// PolicyManager with real sources compiled by the real opa: atomic swaps, failed loads that
// keep the last good policy (with file and line), unchanged sources, overlapping reloads,
// hot reload from a watched directory, and bundle files checked against a signing key.
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { buildBundle, generateSigningKeys, rewriteBundle, scratchDir, testOpa } from '../../test/support/policy-workspace';
import { waitFor } from '../../test/support/wait-for';
import { BundleVerifier } from './bundle-signature';
import { buildWasmBundle, PolicyBuildInterrupted } from './opa-toolchain';
import type { PolicyInput } from './policy-engine';
import { openPolicySource } from './policy-loader';
import { PolicyManager } from './policy-manager';

// Jest's asymmetric matchers are typed `any`; these give them a type that cannot leak into the test's values.
const matching = (pattern: RegExp): unknown => expect.stringMatching(pattern);
const anyDate = (): unknown => expect.any(Date);
const containing = (fields: Record<string, unknown>): unknown => expect.objectContaining(fields);

const policy = (reason: string) => `package portcullis

decision := {"allow": input.action in data.settings.open, "status": 403, "reasons": ["${reason}"]}
`;

const input: PolicyInput = {
  request: { id: 'r', method: 'GET', path: '/orgs/acme', route: '/orgs/{org}' },
  action: 'organization:read',
  resource: { type: 'organization', org: 'acme' },
  subject: { id: 'u', sub: 's', email: null, memberships: {} },
  facts: {},
};

interface LogLine {
  level: string;
  fields: Record<string, unknown>;
  message: string;
}

function recordingLogger() {
  const lines: LogLine[] = [];
  const at = (level: string) => (fields: Record<string, unknown>, message: string) => lines.push({ level, fields, message });
  return { lines, logger: { info: at('info'), warn: at('warn'), error: at('error') } as never };
}

let dir: string;
let counter = 0;

beforeAll(async () => {
  dir = await scratchDir('manager');
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function policyDir(reason = 'first', open: string[] = ['organization:read']): Promise<string> {
  const source = path.join(dir, `source-${++counter}`);
  await mkdir(source);
  await writeFile(path.join(source, 'policy.rego'), policy(reason));
  await writeFile(path.join(source, 'data.json'), JSON.stringify({ settings: { open } }));
  return source;
}

async function managerFor(source: string, extra: { verifier?: BundleVerifier } = {}) {
  const { lines, logger } = recordingLogger();
  const opened = await openPolicySource({
    source,
    entrypoint: 'portcullis/decision',
    buildDir: path.join(dir, `build-${++counter}`),
    toolchain: { opaBin: testOpa() },
    pollIntervalMs: 60_000,
  });
  // Counts the manager's reloads: each one fetches, whether or not anything changed.
  let fetches = 0;
  const fetch = opened.fetch.bind(opened);
  opened.fetch = (...args: Parameters<typeof fetch>) => {
    fetches += 1;
    return fetch(...args);
  };
  const manager = await PolicyManager.create({ source: opened, entrypoint: 'portcullis/decision', logger, ...extra });
  return { manager, lines, fetches: () => fetches };
}

const reasonOf = (manager: PolicyManager) => manager.current.evaluate(input).decision.reasons[0];

describe('PolicyManager with a directory source', () => {
  it('swaps in the recompiled policy, while an engine read before the swap keeps deciding with its own revision', async () => {
    const source = await policyDir('first');
    const { manager } = await managerFor(source);
    const before = manager.current;
    const firstRevision = before.revision;
    expect(manager.state()).toMatchObject({ kind: 'directory', source, entrypoints: ['portcullis/decision'], lastError: null });

    await writeFile(path.join(source, 'policy.rego'), policy('second'));
    const outcome = await manager.reload();
    expect(outcome).toEqual({ status: 'loaded', revision: matching(/^sha256:/) });
    expect(outcome.revision).not.toBe(firstRevision);
    expect(reasonOf(manager)).toBe('second');
    expect(manager.current.evaluate(input).revision).toBe(outcome.revision);

    // A request that read the engine before the swap finishes on it (evaluation is synchronous).
    expect(before.evaluate(input)).toMatchObject({ revision: firstRevision, decision: { reasons: ['first'] } });
  });

  it('keeps the last good policy when the change does not compile, and reports file, line and message', async () => {
    const source = await policyDir('good');
    const { manager, lines } = await managerFor(source);
    const good = manager.current.revision;
    const loadedAt = manager.state().loadedAt;

    await writeFile(path.join(source, 'policy.rego'), 'package portcullis\n\ndecision := {"allow" true}\n\nother := 1\n');
    const outcome = await manager.reload();
    expect(outcome).toMatchObject({ status: 'failed', revision: good });
    const state = manager.state();
    expect(state.revision).toBe(good);
    expect(state.loadedAt).toBe(loadedAt);
    expect(state.lastError).toEqual({
      file: path.join(source, 'policy.rego'),
      line: 3,
      message: matching(/^rego_parse_error: /),
      at: anyDate(),
    });
    expect(reasonOf(manager)).toBe('good');
    expect(lines).toContainEqual(
      containing({
        level: 'error',
        fields: containing({ file: path.join(source, 'policy.rego'), line: 3 }),
        message: matching(/last good policy keeps serving/),
      }),
    );

    // Undoing the broken edit brings the source back to what serves: no error any more.
    await writeFile(path.join(source, 'policy.rego'), policy('good'));
    expect(await manager.reload()).toEqual({ status: 'unchanged', revision: good });
    expect(manager.state().lastError).toBeNull();
  });

  it('reports a semantic error with its location, and an invalid data.json by file', async () => {
    const source = await policyDir();
    const { manager } = await managerFor(source);
    await writeFile(path.join(source, 'extra.rego'), 'package portcullis\n\nx := y\n');
    await manager.reload();
    expect(manager.state().lastError).toMatchObject({
      file: path.join(source, 'extra.rego'),
      line: 3,
      message: 'rego_unsafe_var_error: var y is unsafe',
    });

    await rm(path.join(source, 'extra.rego'));
    await writeFile(path.join(source, 'data.json'), '{"settings": ');
    await manager.reload();
    expect(manager.state().lastError).toMatchObject({ file: path.join(source, 'data.json'), message: matching(/.+/) });
    expect(manager.state().lastError?.line).toBeUndefined();
  });

  it('refuses a policy without the configured entrypoint and keeps the old one', async () => {
    const source = await policyDir();
    const { manager } = await managerFor(source);
    await writeFile(path.join(source, 'policy.rego'), 'package portcullis\n\nverdict := true\n');
    const outcome = await manager.reload();
    expect(outcome.status).toBe('failed');
    expect(manager.state().lastError?.message).toMatch(/portcullis\/decision/);
    expect(reasonOf(manager)).toBe('first');
  });

  it('loads a changed data.json as policy data', async () => {
    const source = await policyDir('closed', []);
    const { manager } = await managerFor(source);
    expect(manager.current.evaluate(input).decision.allow).toBe(false);
    await writeFile(path.join(source, 'data.json'), JSON.stringify({ settings: { open: ['organization:read'] } }));
    expect((await manager.reload()).status).toBe('loaded');
    expect(manager.current.evaluate(input).decision.allow).toBe(true);
  });

  it('runs overlapping reloads one after the other, so the last caller sees its change', async () => {
    const source = await policyDir('one');
    const { manager } = await managerFor(source);
    await writeFile(path.join(source, 'policy.rego'), policy('two'));
    const first = manager.reload();
    await writeFile(path.join(source, 'policy.rego'), policy('three'));
    const second = manager.reload();
    const third = manager.reload();
    await Promise.all([first, second, third]);
    expect(second).toBe(third);
    expect(reasonOf(manager)).toBe('three');
  });

  it('reloads by itself after a .rego file is saved, and ignores *_test.rego files', async () => {
    const source = await policyDir('watched');
    const { manager, fetches } = await managerFor(source);
    manager.watch();
    try {
      const revision = manager.current.revision;
      const fetched = fetches();
      await writeFile(path.join(source, 'policy_test.rego'), 'package portcullis_test\n');
      // Nothing to wait for but silence: several times the watcher's 150 ms debounce, after
      // which a reload would have started (it is counted as it starts, however long it takes).
      await new Promise((resolve) => setTimeout(resolve, 600));
      expect(fetches()).toBe(fetched);
      expect(manager.current.revision).toBe(revision);

      await mkdir(path.join(source, 'nested'));
      await writeFile(path.join(source, 'nested', 'more.rego'), policy('unused').replace('decision', 'other'));
      await writeFile(path.join(source, 'policy.rego'), policy('saved'));
      await waitFor(() => (reasonOf(manager) === 'saved' ? true : undefined), { timeoutMs: 5000, what: 'the saved policy to serve' });
    } finally {
      manager.close();
    }
  });

  it('keeps watching a directory that is removed and created again', async () => {
    const source = await policyDir('original');
    const { manager } = await managerFor(source);
    manager.watch();
    try {
      await rm(source, { recursive: true });
      await new Promise((resolve) => setTimeout(resolve, 300));
      await mkdir(source);
      await writeFile(path.join(source, 'data.json'), JSON.stringify({ settings: { open: [] } }));
      await writeFile(path.join(source, 'policy.rego'), policy('recreated'));
      await waitFor(() => (reasonOf(manager) === 'recreated' ? true : undefined), {
        timeoutMs: 5000,
        what: 'the recreated policy to serve',
      });
    } finally {
      manager.close();
    }
  });
});

describe('PolicyManager with a bundle file and a verification key', () => {
  it('loads a signed bundle, refuses a tampered replacement, then accepts a correctly signed one', async () => {
    const keys = await generateSigningKeys(dir, 'ec', 'manager');
    const verifier = await BundleVerifier.create({ public_key_file: keys.publicKeyFile });
    const source = await policyDir('signed v1');
    const bundle = path.join(dir, 'served.tar.gz');
    await buildBundle(source, bundle, { signingKey: keys.privateKeyFile, algorithm: 'ES256' });
    const { manager } = await managerFor(bundle, { verifier });
    expect(manager.state().kind).toBe('bundle');
    expect(reasonOf(manager)).toBe('signed v1');

    await writeFile(path.join(source, 'policy.rego'), policy('signed v2'));
    const v2 = await buildBundle(source, path.join(dir, 'v2.tar.gz'), { signingKey: keys.privateKeyFile, algorithm: 'ES256' });
    await rewriteBundle(v2, bundle, (files) => {
      files.set('data.json', Buffer.from(JSON.stringify({ settings: { open: ['organization:read', 'organization:delete'] } })));
    });
    expect(await manager.reload()).toMatchObject({
      status: 'failed',
      error: { message: 'bundle signature rejected: data.json does not match its signed digest' },
    });
    expect(reasonOf(manager)).toBe('signed v1');

    await buildBundle(source, bundle, { signingKey: keys.privateKeyFile, algorithm: 'ES256' });
    expect((await manager.reload()).status).toBe('loaded');
    expect(reasonOf(manager)).toBe('signed v2');
    expect(manager.state().lastError).toBeNull();
  });

  it('reloads by itself when the bundle file is replaced by a rename, as deployments do', async () => {
    const source = await policyDir('bundled v1');
    const bundle = await buildBundle(source, path.join(dir, 'watched.tar.gz'));
    const { manager } = await managerFor(bundle);
    manager.watch();
    try {
      await writeFile(path.join(source, 'policy.rego'), policy('bundled v2'));
      await buildBundle(source, path.join(dir, 'watched.tar.gz.tmp'));
      await rename(path.join(dir, 'watched.tar.gz.tmp'), bundle);
      await waitFor(() => (reasonOf(manager) === 'bundled v2' ? true : undefined), {
        timeoutMs: 5000,
        what: 'the replaced bundle to serve',
      });
    } finally {
      manager.close();
    }
  });

  it('refuses an unsigned bundle at creation', async () => {
    const keys = await generateSigningKeys(dir, 'rsa', 'creation');
    const verifier = await BundleVerifier.create({ public_key_file: keys.publicKeyFile });
    const bundle = await buildBundle(await policyDir(), path.join(dir, 'unsigned.tar.gz'));
    await expect(managerFor(bundle, { verifier })).rejects.toThrow('bundle signature rejected: the bundle has no .signatures.json');
  });
});

describe('a compiler that hangs', () => {
  // A stand-in for opa: the real one, until the `hang` file exists; then `build` writes its pid
  // and sleeps. Only the handling of the process is under test here, not OPA.
  async function hangingOpa() {
    const n = ++counter;
    const script = path.join(dir, `opa-${n}.sh`);
    const hang = path.join(dir, `hang-${n}`);
    const pidFile = path.join(dir, `opa-${n}.pid`);
    await writeFile(
      script,
      `#!/bin/sh\nif [ "$1" = build ] && [ -e '${hang}' ]; then echo $$ > '${pidFile}'; exec sleep 60; fi\nexec '${testOpa()}' "$@"\n`,
      { mode: 0o755 },
    );
    const pid = () =>
      waitFor(async () => Number((await readFile(pidFile, 'utf8')).trim()) || undefined, {
        timeoutMs: 10_000,
        what: 'the hanging opa build to start',
      });
    return { script, hang, pid };
  }

  const alive = (pid: number) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };

  it('kills `opa build` still running when the policy manager closes, and the reload reports the failure', async () => {
    const opa = await hangingOpa();
    const source = await policyDir('before');
    const { lines, logger } = recordingLogger();
    const opened = await openPolicySource({
      source,
      entrypoint: 'portcullis/decision',
      buildDir: path.join(dir, `build-${++counter}`),
      toolchain: { opaBin: opa.script },
      pollIntervalMs: 60_000,
    });
    const manager = await PolicyManager.create({ source: opened, entrypoint: 'portcullis/decision', logger });
    await writeFile(opa.hang, '');
    await writeFile(path.join(source, 'policy.rego'), policy('after'));
    const reload = manager.reload();
    const pid = await opa.pid();
    expect(alive(pid)).toBe(true);

    const closedAt = Date.now();
    manager.close();
    expect(await reload).toMatchObject({ status: 'failed', error: { message: matching(/was cancelled and killed/) } });
    expect(Date.now() - closedAt).toBeLessThan(5_000);
    await waitFor(() => (alive(pid) ? undefined : true), { timeoutMs: 5_000, what: 'the opa process to be gone' });
    expect(reasonOf(manager)).toBe('before');
    // Closing is not a policy failure: nothing is logged as one, and later reloads do not compile.
    expect(lines.filter((line) => line.level === 'error')).toEqual([]);
    expect(await manager.reload()).toEqual({ status: 'unchanged', revision: manager.current.revision });
  });

  it('kills `opa build` that runs past its timeout', async () => {
    const opa = await hangingOpa();
    await writeFile(opa.hang, '');
    const started = Date.now();
    const build = buildWasmBundle({
      opa: opa.script,
      source: await policyDir(),
      entrypoints: ['portcullis/decision'],
      output: path.join(dir, `timeout-${counter}.tar.gz`),
      timeoutMs: 500,
    });
    await expect(build).rejects.toThrow(PolicyBuildInterrupted);
    await expect(build).rejects.toThrow(/did not finish within 500 ms and was killed/);
    expect(Date.now() - started).toBeLessThan(10_000);
    const pid = await opa.pid();
    await waitFor(() => (alive(pid) ? undefined : true), { timeoutMs: 5_000, what: 'the opa process to be gone' });
  });
});
