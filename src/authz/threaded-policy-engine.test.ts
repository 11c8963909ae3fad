// The policy thread (`policy.evaluation: thread`) with the shipped policies: it decides
// exactly as the inline engine, denies what it had in hand when its thread stops and starts
// another, refuses a policy its thread cannot load, and stops when closed. Needs the build's
// compiled thread entry (npm test builds first).
import { readFile } from 'node:fs/promises';
import type { Worker } from 'node:worker_threads';
import { readBundle, type PolicyBundle } from './policy-bundle';
import type { PolicyInput } from './policy-engine';
import { ThreadedPolicyEngine } from './threaded-policy-engine';
import { WasmPolicyEngine } from './wasm-policy-engine';

let shipped: PolicyBundle;
const ENTRYPOINT = 'portcullis/decision';

beforeAll(async () => {
  const bundle = process.env.PORTCULLIS_TEST_BUNDLE;
  if (!bundle) throw new Error('run through jest: the global setup provides PORTCULLIS_TEST_BUNDLE');
  shipped = await readBundle(await readFile(bundle));
});

function input(action: string, permissions: string[], extra: Partial<PolicyInput> = {}): PolicyInput {
  return {
    request: {
      id: 'req-1',
      method: 'GET',
      path: '/orgs/acme/projects/api',
      route: '/orgs/{org}/projects/{project}',
      time_ns: Date.UTC(2026, 10, 27) * 1e6,
    },
    action,
    resource: { type: 'project', org: 'acme', project: 'api' },
    subject: { id: 'u-1', sub: 'idp|1', email: null, memberships: { acme: { role: 'custom', teams: [], roles: ['custom'], permissions } } },
    facts: { organization: { exists: true }, project: { exists: true, in_organization: true } },
    ...extra,
  };
}

const INPUTS: PolicyInput[] = [
  input('project:read', ['project:read']),
  input('project:read', ['project:*']),
  input('project:delete', ['project:read']),
  input('project:read', ['*'], { resource: { type: 'project', org: 'globex', project: 'api' } }),
  input('project:read', ['project:read'], { subject: { id: null, sub: 'idp|2', email: null, memberships: {} } }),
];

/** The engine's thread, to stop it as a crash would (test-only access to a private field). */
const threadOf = (engine: ThreadedPolicyEngine) => (engine as unknown as { worker: Worker | undefined }).worker;

describe('ThreadedPolicyEngine', () => {
  it('decides every input exactly as the inline engine, in its thread', async () => {
    const local = await WasmPolicyEngine.create(shipped, ENTRYPOINT);
    const engine = await ThreadedPolicyEngine.start(local, shipped, ENTRYPOINT);
    try {
      const inline = jest.spyOn(local, 'evaluate');
      const threaded = await Promise.all(INPUTS.map((each) => engine.evaluateOffThread(each)));
      expect(inline).not.toHaveBeenCalled();
      inline.mockRestore();
      expect(threaded.map((evaluation) => evaluation.decision)).toEqual(INPUTS.map((each) => local.evaluate(each).decision));
      expect(threaded.map((evaluation) => evaluation.decision.allow)).toEqual([true, true, false, false, false]);
      expect(threaded.every((evaluation) => evaluation.revision === shipped.revision)).toBe(true);
      expect(threadOf(engine)?.threadId).toBeGreaterThan(0);
    } finally {
      await engine.close();
    }
  });

  it('sends the requests of one turn of the event loop to its thread as one message', async () => {
    const local = await WasmPolicyEngine.create(shipped, ENTRYPOINT);
    const engine = await ThreadedPolicyEngine.start(local, shipped, ENTRYPOINT);
    const posted = jest.spyOn(threadOf(engine)!, 'postMessage');
    try {
      const first = await Promise.all(INPUTS.map((each) => engine.evaluateOffThread(each)));
      const second = await Promise.all(INPUTS.slice(0, 2).map((each) => engine.evaluateOffThread(each)));
      expect(posted.mock.calls.map(([message]) => (message as unknown[]).length)).toEqual([INPUTS.length, 2]);
      expect([...first, ...second].map((evaluation) => evaluation.decision.allow)).toEqual([true, true, false, false, false, true, true]);
    } finally {
      posted.mockRestore();
      await engine.close();
    }
  });

  it('denies what its thread had in hand when the thread stops, and judges the next request in a new thread', async () => {
    const local = await WasmPolicyEngine.create(shipped, ENTRYPOINT);
    const engine = await ThreadedPolicyEngine.start(local, shipped, ENTRYPOINT);
    try {
      const first = threadOf(engine)!;
      const inHand = Array.from({ length: 2_000 }, () => engine.evaluateOffThread(INPUTS[0]!));
      // One turn: the engine posts them (its setImmediate came first), and the thread has them.
      await new Promise((resolve) => setImmediate(resolve));
      await first.terminate();
      const answered = await Promise.all(inHand);
      const stopped = answered.filter((evaluation) => !evaluation.decision.allow);
      expect(stopped.length).toBeGreaterThan(0);
      for (const evaluation of stopped) {
        expect(evaluation.decision).toMatchObject({ allow: false, status: 500, code: 'policy_error' });
        expect(evaluation.decision.reasons[0]).toMatch(/the policy thread stopped/);
      }
      expect((await engine.evaluateOffThread(INPUTS[0]!)).decision.allow).toBe(true);
      const second = threadOf(engine);
      expect(second).not.toBe(first);
      // A late event of the stopped thread (a crash says 'error', then 'exit') takes nothing of the new one's.
      const later = Array.from({ length: 50 }, () => engine.evaluateOffThread(INPUTS[0]!));
      first.emit('exit', 1);
      expect((await Promise.all(later)).every((evaluation) => evaluation.decision.allow)).toBe(true);
      expect(threadOf(engine)).toBe(second);
    } finally {
      await engine.close();
    }
  });

  it('refuses to start when its thread cannot load the policy', async () => {
    const local = await WasmPolicyEngine.create(shipped, ENTRYPOINT);
    await expect(ThreadedPolicyEngine.start(local, { ...shipped, wasm: Buffer.from('not WebAssembly') }, ENTRYPOINT)).rejects.toThrow(
      /the policy thread could not load the policy: the policy's WebAssembly could not be loaded/,
    );
    await expect(ThreadedPolicyEngine.start(local, shipped, 'portcullis/nothing')).rejects.toThrow(
      /has no entrypoint 'portcullis\/nothing'/,
    );
  });

  it('stops its thread when closed and denies what comes after', async () => {
    const local = await WasmPolicyEngine.create(shipped, ENTRYPOINT);
    const engine = await ThreadedPolicyEngine.start(local, shipped, ENTRYPOINT);
    const thread = threadOf(engine)!;
    const exited = new Promise((resolve) => thread.once('exit', resolve));
    const inHand = engine.evaluateOffThread(INPUTS[0]!);
    await engine.close();
    expect((await inHand).decision.allow).toBe(true);
    await exited;
    expect((await engine.evaluateOffThread(INPUTS[0]!)).decision).toMatchObject({ allow: false, status: 500, code: 'policy_error' });
    expect(local.evaluate(INPUTS[0]!).decision.allow).toBe(true);
  });
});
