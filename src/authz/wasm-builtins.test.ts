// The host's built-ins on a really compiled policy: time.now_ns() is the input's request time
// (compared exactly inside the policy: past 2^53), the UTC calendar helpers agree with OPA's, and a policy importing a
// built-in nobody provides is refused at load with the built-in and its file:line.
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { buildWasmBundle, sourceSnapshot } from './opa-toolchain';
import { readBundle, type PolicyBundle } from './policy-bundle';
import type { PolicyInput } from './policy-engine';
import { JS_RUNTIME_BUILTINS, UnsupportedBuiltinError } from './wasm-builtins';
import { WasmPolicyEngine } from './wasm-policy-engine';

const TIME_POLICY = `package clock

reasons := [
	sprintf("%v", [time.now_ns() == 1795822205123000000]),
	time.weekday(time.now_ns()),
	sprintf("%v", [time.date(time.now_ns())]),
	sprintf("%v", [time.clock(time.now_ns())]),
	sprintf("%v", [time.clock([time.now_ns(), "America/New_York"])]),
	time.weekday([time.now_ns(), "Asia/Tokyo"]),
	sprintf("%v", [time.add_date(time.now_ns(), 0, 1, 0) == 1798414205123000000]),
	sprintf("%v", [time.parse_rfc3339_ns("2026-11-27T10:00:00.123Z") == 1795773600123000000]),
]

decision := {"allow": time.now_ns() == input.request.time_ns, "status": 200, "reasons": reasons}
`;

// A comment that mentions http.send("x") is not a use.
const NETWORK_POLICY = `package network

# Calls http.send(...) and opa.runtime() below.
decision := {"allow": true, "status": 200, "reasons": [sprintf("%v", [http.send({"method": "GET", "url": "http://127.0.0.1:1"})])]} if {
	opa.runtime().env.HOME != ""
}
`;

let scratch: string;

async function compile(name: string, files: Record<string, string>, entrypoint: string): Promise<PolicyBundle> {
  const source = path.join(scratch, name);
  await mkdir(source);
  for (const [file, text] of Object.entries(files)) await writeFile(path.join(source, file), text);
  const { output } = await buildWasmBundle({
    opa: process.env.PORTCULLIS_TEST_OPA!,
    source,
    entrypoints: [entrypoint],
    output: path.join(scratch, `${name}.tar.gz`),
  });
  return readBundle(await readFile(output));
}

function at(time: string | undefined): PolicyInput {
  const ms = time === undefined ? undefined : Date.parse(time);
  return {
    request: {
      id: 'r',
      method: 'DELETE',
      path: '/orgs/acme',
      route: '/orgs/{org}',
      ...(ms === undefined ? {} : { time, time_ns: ms * 1_000_000 }),
    },
    action: 'organization:delete',
    resource: { type: 'organization', org: 'acme' },
    subject: { id: 'u', sub: 's', email: null, memberships: {} },
    facts: {},
  };
}

beforeAll(async () => {
  if (!process.env.PORTCULLIS_TEST_OPA) throw new Error('run through jest: the global setup provides PORTCULLIS_TEST_OPA');
  scratch = await mkdtemp(path.join(os.tmpdir(), 'portcullis-builtins-'));
});
afterAll(async () => {
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

describe('built-ins the host provides', () => {
  it("lists exactly the built-ins opa-wasm's JavaScript runtime implements", () => {
    // Its own file, outside the package's exports: a new opa-wasm that adds or drops one fails here.
    const require = createRequire(__filename);
    const own = require(path.join(path.dirname(require.resolve('@open-policy-agent/opa-wasm')), 'builtins', 'index.js')) as object;
    expect([...JS_RUNTIME_BUILTINS].sort()).toEqual(Object.keys(own).sort());
  });

  it("answers time.now_ns() with the input's request.time_ns, exactly, and the calendar helpers in UTC or a zone", async () => {
    const engine = await WasmPolicyEngine.create(await compile('clock', { 'clock.rego': TIME_POLICY }, 'clock/decision'), 'clock/decision');
    // A Friday, 23:30 in UTC: already Saturday in Tokyo, still Friday 18:30 in New York.
    const { decision } = engine.evaluate(at('2026-11-27T23:30:05.123Z'));
    expect(decision).toEqual({
      allow: true,
      status: 200,
      reasons: [
        'true',
        'Friday',
        // opa-wasm's sprintf prints an array as JavaScript does.
        '2026,11,27',
        '23,30,5',
        '18,30,5',
        'Saturday',
        'true',
        'true',
      ],
    });
    // Another input, another time: nothing is kept from the previous evaluation.
    const thursday = engine.evaluate(at('2026-11-26T09:00:00.000Z')).decision;
    expect([thursday.allow, ...thursday.reasons.slice(0, 2)]).toEqual([true, 'false', 'Thursday']);
  });

  it('fails the evaluation (500) when the input carries no request time', async () => {
    const engine = await WasmPolicyEngine.create(
      await compile('clockless', { 'clock.rego': TIME_POLICY }, 'clock/decision'),
      'clock/decision',
    );
    const { decision } = engine.evaluate(at(undefined));
    expect(decision.allow).toBe(false);
    expect(decision.status).toBe(500);
    expect(decision.reasons[0]).toMatch(/time\.now_ns: the input has no request\.time_ns/);
  });

  it('refuses a policy that uses built-ins the WebAssembly runtime cannot evaluate, naming each with file and line', async () => {
    const bundle = await compile('network', { 'network.rego': NETWORK_POLICY }, 'network/decision');
    const { rego } = await sourceSnapshot(path.join(scratch, 'network'));
    const refused = await WasmPolicyEngine.create(bundle, 'network/decision', { sources: rego }).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(refused).toBeInstanceOf(UnsupportedBuiltinError);
    const file = path.join(scratch, 'network', 'network.rego');
    expect((refused as UnsupportedBuiltinError).uses).toEqual([
      { builtin: 'http.send', file, line: 4 },
      { builtin: 'opa.runtime', file, line: 5 },
    ]);
    expect((refused as Error).message).toBe(
      `the policy uses built-ins http.send (${file}:4), opa.runtime (${file}:5), which the WebAssembly runtime cannot evaluate; ` +
        'the gateway gives a policy no I/O: put what it needs into the input or data',
    );
  });
});
