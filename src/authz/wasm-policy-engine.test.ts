import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PolicyError } from '../base/errors';
import { buildWasmBundle } from './opa-toolchain';
import { readBundle, type PolicyBundle } from './policy-bundle';
import type { PolicyInput } from './policy-engine';
import { WasmPolicyEngine } from './wasm-policy-engine';

// Ad-hoc policies, one entrypoint per way a policy can misbehave, compiled in one opa run.
const BROKEN_POLICIES = `package broken

undefined_decision := {"allow": true, "status": 200, "reasons": []} if input.facts.test.never

no_allow := {"status": 200, "reasons": ["looks fine"]}

allow_yes := {"allow": "yes", "status": 200, "reasons": []}

not_an_object := true

fractional_status := {"allow": false, "status": 403.5, "reasons": []}

numeric_reasons := {"allow": false, "status": 403, "reasons": [1, 2]}

deny_with_success_status := {"allow": false, "status": 200, "reasons": ["nope"]}

well_formed_deny := {"allow": false, "status": 404, "reasons": ["project 'x' not found"]}

# Two values for one complete rule are an evaluation error, but only when asked to conflict.
conflict := {"allow": true, "status": 200, "reasons": ["first"]}

conflict := {"allow": true, "status": 200, "reasons": ["second"]} if input.facts.test.conflict

quotient := {"allow": true, "status": 200, "reasons": [sprintf("%v", [1 / input.facts.test.divisor])]}

from_data := {"allow": data.settings.open, "status": 200, "reasons": []}

coded := {"allow": false, "status": 403, "reasons": ["no"], "code": "missing_permission", "params": {"permission": "x:y"}}

code_without_params := {"allow": true, "status": 200, "reasons": [], "code": "open"}

code_not_snake_case := {"allow": true, "status": 200, "reasons": [], "code": "Missing Permission"}

params_not_an_object := {"allow": true, "status": 200, "reasons": [], "code": "open", "params": ["x"]}

params_without_code := {"allow": true, "status": 200, "reasons": [], "params": {}}
`;

const BROKEN_ENTRYPOINTS = [
  'undefined_decision',
  'no_allow',
  'allow_yes',
  'not_an_object',
  'fractional_status',
  'numeric_reasons',
  'deny_with_success_status',
  'well_formed_deny',
  'conflict',
  'quotient',
  'from_data',
  'coded',
  'code_without_params',
  'code_not_snake_case',
  'params_not_an_object',
  'params_without_code',
].map((rule) => `broken/${rule}`);

function request(overrides: Partial<PolicyInput> = {}): PolicyInput {
  return {
    request: { id: 'req-1', method: 'GET', path: '/orgs/acme', route: '/orgs/{org}' },
    action: 'organization:read',
    resource: { type: 'organization', org: 'acme' },
    subject: { id: 'u-alice', sub: 'idp|alice', email: 'alice@example.com', memberships: {} },
    facts: {},
    ...overrides,
  };
}

const alice = {
  id: 'u-alice',
  sub: 'idp|alice',
  email: 'alice@example.com',
  memberships: {
    acme: { role: 'organization-admin', teams: [], roles: ['organization-admin'], permissions: ['*'] },
    globex: {
      role: 'default',
      teams: [],
      roles: ['default'],
      permissions: ['member:read', 'organization:read', 'project:read', 'team:read'],
    },
  },
};

let scratch: string;
let shipped: PolicyBundle;
let broken: PolicyBundle;

beforeAll(async () => {
  const opa = process.env.PORTCULLIS_TEST_OPA;
  const shippedBundle = process.env.PORTCULLIS_TEST_BUNDLE;
  if (!opa || !shippedBundle) throw new Error('run through jest: the global setup provides PORTCULLIS_TEST_OPA and PORTCULLIS_TEST_BUNDLE');
  shipped = await readBundle(await readFile(shippedBundle));

  scratch = await mkdtemp(path.join(os.tmpdir(), 'portcullis-engine-'));
  const source = path.join(scratch, 'policies');
  await mkdir(source);
  await writeFile(path.join(source, 'broken.rego'), BROKEN_POLICIES);
  await writeFile(path.join(source, 'data.json'), JSON.stringify({ settings: { open: true } }));
  const built = await buildWasmBundle({ opa, source, entrypoints: BROKEN_ENTRYPOINTS, output: path.join(scratch, 'broken.tar.gz') });
  broken = await readBundle(await readFile(built.output));
});

afterAll(async () => {
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

const decide = async (entrypoint: string, input: PolicyInput = request()) =>
  (await WasmPolicyEngine.create(broken, `broken/${entrypoint}`)).evaluate(input).decision;

describe('WasmPolicyEngine with the shipped policies', () => {
  let engine: WasmPolicyEngine;
  beforeAll(async () => {
    engine = await WasmPolicyEngine.create(shipped, 'portcullis/decision');
  });

  it('allows a member to read a project of their organization', () => {
    const { decision } = engine.evaluate(
      request({
        action: 'project:read',
        resource: { type: 'project', org: 'globex', project: 'web' },
        subject: alice,
        facts: { organization: { exists: true }, project: { exists: true, in_organization: true } },
      }),
    );
    expect(decision).toEqual({
      allow: true,
      status: 200,
      reasons: ["granted by permission 'project:read' in organization 'globex'"],
      code: 'granted',
      params: { action: 'project:read', permission: 'project:read', organization: 'globex' },
    });
  });

  it('denies deleting an organization that still has projects, naming them (R5)', () => {
    const { decision } = engine.evaluate(
      request({
        action: 'organization:delete',
        resource: { type: 'organization', org: 'acme' },
        subject: alice,
        facts: { organization: { exists: true, project_count: 2, project_slugs: ['api', 'web'] } },
      }),
    );
    expect(decision).toEqual({
      allow: false,
      status: 409,
      reasons: ["organization 'acme' still has 2 projects (api, web); delete them first"],
      code: 'organization_has_projects',
      params: { organization: 'acme', project_count: 2, projects: ['api', 'web'] },
    });
  });

  it('denies an organization admin in another organization where they lack the permission (R3)', () => {
    const { decision } = engine.evaluate(
      request({
        action: 'project:delete',
        resource: { type: 'project', org: 'globex', project: 'web' },
        subject: alice,
        facts: { organization: { exists: true }, project: { exists: true, in_organization: true } },
      }),
    );
    expect(decision).toEqual({
      allow: false,
      status: 403,
      reasons: ["missing permission 'project:delete' in organization 'globex' (your roles there: default)"],
      code: 'missing_permission',
      params: { permission: 'project:delete', organization: 'globex' },
    });
  });

  it('denies a project addressed under the wrong organization as not found (R7)', () => {
    const { decision } = engine.evaluate(
      request({
        action: 'project:read',
        resource: { type: 'project', org: 'acme', project: 'secret' },
        subject: alice,
        facts: { organization: { exists: true }, project: { exists: true, in_organization: false } },
      }),
    );
    expect(decision).toEqual({
      allow: false,
      status: 404,
      reasons: ["project 'secret' not found in organization 'acme'"],
      code: 'resource_not_found',
      params: { organization: 'acme', resources: { project: 'secret' } },
    });
  });

  it('denies a token subject without a users row', () => {
    const { decision } = engine.evaluate(request({ subject: { id: null, sub: 'idp|ghost', email: null, memberships: {} } }));
    expect(decision).toEqual({
      allow: false,
      status: 403,
      reasons: ["no user is registered for subject 'idp|ghost'; register first: PUT /users/me"],
      code: 'not_registered',
      params: { subject: 'idp|ghost' },
    });
  });

  it('reports the bundle revision and the evaluation latency in microseconds', () => {
    const evaluation = engine.evaluate(request({ subject: alice, facts: { organization: { exists: true } } }));
    expect(engine.revision).toBe(shipped.revision);
    expect(evaluation.revision).toBe(shipped.revision);
    expect(Number.isInteger(evaluation.latencyUs)).toBe(true);
    expect(evaluation.latencyUs).toBeGreaterThanOrEqual(0);
    expect(evaluation.latencyUs).toBeLessThan(1_000_000);
  });
});

describe('WasmPolicyEngine fails closed', () => {
  it('denies with 403 when the decision is undefined for the input', async () => {
    expect(await decide('undefined_decision')).toEqual({
      allow: false,
      status: 403,
      reasons: ["policy error: 'broken/undefined_decision' is undefined for this request"],
      code: 'policy_error',
      params: {},
    });
  });

  it("denies when the policy's decision has no allow", async () => {
    expect(await decide('no_allow')).toEqual({
      allow: false,
      status: 403,
      reasons: ["policy error: 'broken/no_allow' has allow missing, not true or false"],
      code: 'policy_error',
      params: {},
    });
  });

  it('denies when allow is not exactly true', async () => {
    expect(await decide('allow_yes')).toEqual({
      allow: false,
      status: 403,
      reasons: [`policy error: 'broken/allow_yes' has allow "yes", not true or false`],
      code: 'policy_error',
      params: {},
    });
  });

  it('denies when the decision is not an object', async () => {
    expect(await decide('not_an_object')).toEqual({
      allow: false,
      status: 403,
      reasons: ["policy error: 'broken/not_an_object' is true, not an object with allow, status and reasons"],
      code: 'policy_error',
      params: {},
    });
  });

  it('denies when the status is not an integer', async () => {
    expect(await decide('fractional_status')).toEqual({
      allow: false,
      status: 403,
      reasons: ["policy error: 'broken/fractional_status' has status 403.5, not an integer"],
      code: 'policy_error',
      params: {},
    });
  });

  it('denies when the reasons are not a list of strings', async () => {
    expect(await decide('numeric_reasons')).toEqual({
      allow: false,
      status: 403,
      reasons: ["policy error: 'broken/numeric_reasons' has reasons [1,2], not a list of strings"],
      code: 'policy_error',
      params: {},
    });
  });

  it("turns a deny with a success status into a 403 that keeps the policy's reasons", async () => {
    expect(await decide('deny_with_success_status')).toEqual({
      allow: false,
      status: 403,
      reasons: ["policy error: 'broken/deny_with_success_status' denies with status 200, not an error status", 'nope'],
      code: 'policy_error',
      params: {},
    });
  });

  it('passes a code and its params through; a code without params gets {}', async () => {
    expect(await decide('coded')).toEqual({
      allow: false,
      status: 403,
      reasons: ['no'],
      code: 'missing_permission',
      params: { permission: 'x:y' },
    });
    expect(await decide('code_without_params')).toEqual({ allow: true, status: 200, reasons: [], code: 'open', params: {} });
  });

  it('denies when the code is not snake_case, the params not an object, or params come without a code', async () => {
    expect(await decide('code_not_snake_case')).toEqual({
      allow: false,
      status: 403,
      reasons: [`policy error: 'broken/code_not_snake_case' has code "Missing Permission", not a snake_case name (^[a-z][a-z0-9_]{0,63}$)`],
      code: 'policy_error',
      params: {},
    });
    expect(await decide('params_not_an_object')).toEqual({
      allow: false,
      status: 403,
      reasons: [`policy error: 'broken/params_not_an_object' has params ["x"], not an object`],
      code: 'policy_error',
      params: {},
    });
    expect(await decide('params_without_code')).toEqual({
      allow: false,
      status: 403,
      reasons: ["policy error: 'broken/params_without_code' has params but no code"],
      code: 'policy_error',
      params: {},
    });
  });

  it('passes a well-formed deny through unchanged', async () => {
    expect(await decide('well_formed_deny')).toEqual({ allow: false, status: 404, reasons: ["project 'x' not found"] });
  });

  it('denies with 500 when evaluation fails, and evaluates the next request normally', async () => {
    const engine = await WasmPolicyEngine.create(broken, 'broken/conflict');
    const failed = engine.evaluate(request({ facts: { test: { conflict: true } } }));
    expect(failed.decision.allow).toBe(false);
    expect(failed.decision.status).toBe(500);
    expect(failed.decision.reasons).toEqual([expect.stringMatching(/^policy error: evaluating 'broken\/conflict' failed: .*conflict/)]);
    expect(failed.decision.code).toBe('policy_error');
    expect(failed.revision).toBe(broken.revision);

    expect(engine.evaluate(request()).decision).toEqual({ allow: true, status: 200, reasons: ['first'] });
  });

  it('denies when a division by zero leaves the decision undefined', async () => {
    expect(await decide('quotient', request({ facts: { test: { divisor: 0 } } }))).toMatchObject({ allow: false, status: 403 });
    expect(await decide('quotient', request({ facts: { test: { divisor: 4 } } }))).toEqual({ allow: true, status: 200, reasons: ['0.25'] });
  });
});

describe('WasmPolicyEngine.create', () => {
  it("gives the policy the bundle's data", async () => {
    expect(await decide('from_data')).toEqual({ allow: true, status: 200, reasons: [] });
  });

  it('rejects an entrypoint the policy does not define, listing the ones it has', async () => {
    const creating = WasmPolicyEngine.create(shipped, 'portcullis/allow');
    await expect(creating).rejects.toThrow(PolicyError);
    await expect(creating).rejects.toThrow("the policy has no entrypoint 'portcullis/allow'; it has 'portcullis/decision'");
  });

  it('rejects bytes that are not WebAssembly', async () => {
    await expect(WasmPolicyEngine.create({ ...shipped, wasm: Buffer.from('not wasm') }, 'portcullis/decision')).rejects.toThrow(
      /^the policy's WebAssembly could not be loaded: /,
    );
  });
});
