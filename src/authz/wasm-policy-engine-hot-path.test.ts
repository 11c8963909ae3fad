// The engine's hot-path measures with the shipped policies: serializing shared (frozen)
// input parts once must never serve an outdated subject, and re-creating the instance when
// its memory passes the bound must not change a single decision.
import { readFile } from 'node:fs/promises';
import { readBundle, type PolicyBundle } from './policy-bundle';
import type { PolicyInput } from './policy-engine';
import { WasmPolicyEngine } from './wasm-policy-engine';

let shipped: PolicyBundle;

beforeAll(async () => {
  const bundle = process.env.PORTCULLIS_TEST_BUNDLE;
  if (!bundle) throw new Error('run through jest: the global setup provides PORTCULLIS_TEST_BUNDLE');
  shipped = await readBundle(await readFile(bundle));
});

const member = (permissions: string[]) => ({ role: 'custom', teams: [], roles: ['custom'], permissions });

function input(subject: PolicyInput['subject']): PolicyInput {
  return {
    request: { id: 'req-1', method: 'POST', path: '/orgs/acme/projects', route: '/orgs/{org}/projects' },
    action: 'project:create',
    resource: { type: 'project', org: 'acme' },
    subject,
    facts: { organization: { exists: true } },
  };
}

describe('WasmPolicyEngine hot path', () => {
  it('judges a subject that is not frozen anew each time, even when the same object changed', async () => {
    const engine = await WasmPolicyEngine.create(shipped, 'portcullis/decision');
    const subject = { id: 'u-1', sub: 'idp|1', email: null, memberships: { acme: member(['project:read']) } };
    expect(engine.evaluate(input(subject)).decision.allow).toBe(false);
    subject.memberships.acme = member(['project:create']);
    expect(engine.evaluate(input(subject)).decision.allow).toBe(true);
  });

  it('judges frozen (cached) subjects by their own content', async () => {
    const engine = await WasmPolicyEngine.create(shipped, 'portcullis/decision');
    const reader = Object.freeze({
      id: 'u-1',
      sub: 'idp|1',
      email: null,
      memberships: Object.freeze({ acme: Object.freeze(member(['project:read'])) }),
    });
    const creator = Object.freeze({
      id: 'u-2',
      sub: 'idp|2',
      email: null,
      memberships: Object.freeze({ acme: Object.freeze(member(['project:create'])) }),
    });
    for (let i = 0; i < 3; i += 1) {
      expect(engine.evaluate(input(reader)).decision.allow).toBe(false);
      expect(engine.evaluate(input(creator)).decision.allow).toBe(true);
    }
  });

  it("reads and writes the instance's memory itself: multi-byte text both ways, an input that outgrows the memory, and the next one", async () => {
    const engine = await WasmPolicyEngine.create(shipped, 'portcullis/decision');
    const org = 'äcme-日本-🦀';
    const subject = { id: 'u-1', sub: 'idp|1', email: null, memberships: { [org]: member(['project:create']) } };
    const small = { ...input(subject), resource: { type: 'project', org } };
    const first = engine.evaluate(small).decision;
    expect(first.allow).toBe(true);
    expect(first.reasons.join(' ')).toContain(org);

    // Three bytes of UTF-8 per character: several times the instance's memory before this input.
    const memoryBefore = engine.memoryBytes;
    const huge = { ...small, facts: { organization: { exists: true, note: '日'.repeat(memoryBefore) } } };
    const grown = engine.evaluate(huge).decision;
    expect(engine.memoryBytes).toBeGreaterThan(memoryBefore);
    expect(grown).toEqual(first);
    expect(engine.evaluate(small).decision).toEqual(first);
  });

  it('re-creates the instance when its memory passes the bound, deciding exactly as before', async () => {
    const engine = await WasmPolicyEngine.create(shipped, 'portcullis/decision', { maxMemoryBytes: 1 });
    const creator = { id: 'u-2', sub: 'idp|2', email: null, memberships: { acme: member(['project:create']) } };
    const reader = { id: 'u-1', sub: 'idp|1', email: null, memberships: { acme: member(['project:read']) } };
    for (let i = 0; i < 5; i += 1) {
      const { reasons, params, ...decision } = engine.evaluate(input(creator)).decision;
      expect(decision).toEqual({ allow: true, status: 200, code: 'granted' });
      expect(reasons).toBeInstanceOf(Array);
      expect(params).toBeInstanceOf(Object);
      expect(engine.evaluate(input(reader)).decision.allow).toBe(false);
    }
    expect(engine.recycledInstances).toBe(10);
  });

  it('keeps its memory bounded after an input far larger than usual', async () => {
    const engine = await WasmPolicyEngine.create(shipped, 'portcullis/decision', { maxMemoryBytes: 8 * 1024 * 1024 });
    const memberships = Object.fromEntries(Array.from({ length: 20_000 }, (_, i) => [`org-${i}`, member(['project:read'])]));
    engine.evaluate(input({ id: 'u-3', sub: 'idp|3', email: null, memberships }));
    expect(engine.memoryBytes).toBeLessThanOrEqual(8 * 1024 * 1024);
    expect(engine.recycledInstances).toBe(1);
    expect(
      engine.evaluate(input({ id: 'u-2', sub: 'idp|2', email: null, memberships: { acme: member(['project:create']) } })).decision.allow,
    ).toBe(true);
  });
});
