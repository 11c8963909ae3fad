// policy.evaluation: thread against a running gateway (a copy of the shipped policies as its
// source): requests are judged in the policy thread exactly as inline, dry runs too, a
// reload under traffic swaps to a new thread without one request failing, and a thread that
// stops is replaced while the requests it had in hand are denied, never forwarded.
import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Worker } from 'node:worker_threads';
import { seedDirectory } from './support/directory-fixtures';
import { startHarness, type Harness } from './support/gateway-harness';
import { copyShippedPolicies, scratchDir } from './support/policy-workspace';
import { waitFor } from './support/wait-for';
import { ThreadedPolicyEngine } from '../src/authz/threaded-policy-engine';
import { WasmPolicyEngine } from '../src/authz/wasm-policy-engine';

const ADMIN_TOKEN = 'test-admin-token-0123456789';
const MISSING = "missing permission '%s' in organization '%s' (your roles there: %s)";

let h: Harness;
let work: string;
let policies: string;
let alice: string;
let bob: string;

const admin = (pathname: string, init: RequestInit = {}) =>
  fetch(`${h.gateway.adminUrl}/admin/v1${pathname}`, {
    ...init,
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
  });
const detailOf = async (res: Response) => ((await res.json()) as { detail: string }).detail;
const deleteAcme = () => h.request('/orgs/acme', { method: 'DELETE', token: bob });
const forwardedCount = () => Object.values(h.upstreams).reduce((sum, upstream) => sum + upstream.received.length, 0);

// The gateway runs in this process, so the engines' prototypes can be watched: requests must
// reach ThreadedPolicyEngine.evaluateOffThread and never WasmPolicyEngine.evaluate here.
const offThread = jest.spyOn(ThreadedPolicyEngine.prototype, 'evaluateOffThread');
const inline = jest.spyOn(WasmPolicyEngine.prototype, 'evaluate');
const retired = jest.spyOn(ThreadedPolicyEngine.prototype, 'close');

/** The engine that judged the latest request, and its thread (test-only access to a private field, to stop it as a crash would). */
function serving(): { engine: ThreadedPolicyEngine; thread: Worker | undefined } {
  const engine = offThread.mock.contexts.at(-1) as ThreadedPolicyEngine;
  return { engine, thread: (engine as unknown as { worker: Worker | undefined }).worker };
}

beforeAll(async () => {
  work = await scratchDir('policy-thread');
  policies = await copyShippedPolicies(work);
  h = await startHarness({ policy: { source: policies, evaluation: 'thread' } });
  await seedDirectory(h.database.db);
  alice = await h.tokens.sign('alice|sub');
  bob = await h.tokens.sign('bob|sub');
});

afterAll(async () => {
  await h?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

describe('policy.evaluation: thread', () => {
  it('judges requests in the policy thread: allowed ones are forwarded, denied ones answered with the policy’s reasons and recorded', async () => {
    offThread.mockClear();
    inline.mockClear();
    const allowed = await h.request('/orgs/acme', { token: alice });
    expect(allowed.status).toBe(200);
    const before = forwardedCount();
    const denied = await deleteAcme();
    expect(denied.status).toBe(403);
    expect(await detailOf(denied)).toBe(
      "missing permission 'organization:delete' in organization 'acme' (your roles there: default, project-creator)",
    );
    expect(forwardedCount()).toBe(before);
    const decisionId = denied.headers.get('x-portcullis-decision')!;
    const record = await waitFor(
      () => h.database.db('decisions').where({ id: decisionId }).first('allow', 'status', 'policy_revision', 'eval_latency_us'),
      {
        what: 'the denial’s record',
      },
    );
    const { revision } = (await (await admin('/policy')).json()) as { revision: string };
    expect(record).toMatchObject({ allow: false, status: 403, policy_revision: revision });
    expect(offThread).toHaveBeenCalledTimes(2);
    expect(inline).not.toHaveBeenCalled();
    expect(serving().thread?.threadId).toBeGreaterThan(0);
  });

  it('judges a dry run in the policy thread too, with the decision the request gets', async () => {
    offThread.mockClear();
    const res = await admin('/evaluate', {
      method: 'POST',
      body: JSON.stringify({ subject: 'bob|sub', method: 'DELETE', path: '/orgs/acme' }),
    });
    expect(res.status).toBe(200);
    expect(offThread).toHaveBeenCalledTimes(1);
    expect(await res.json()).toMatchObject({ dry_run: true, result: { allow: false, status: 403 } });
  });

  it('swaps to the reloaded policy’s thread under traffic without failing a request, and stops the old thread', async () => {
    await deleteAcme();
    const old = serving();
    const oldExited = new Promise<number>((resolve) => old.thread!.once('exit', resolve));
    retired.mockClear();
    const details: string[] = [];
    let stop = false;
    const client = async () => {
      while (!stop) {
        const res = await deleteAcme();
        expect(res.status).toBe(403);
        details.push(await detailOf(res));
      }
    };
    const clients = Array.from({ length: 8 }, client);
    try {
      const file = path.join(policies, 'organization.rego');
      await writeFile(file, (await readFile(file, 'utf8')).replace(`"${MISSING}"`, `"(reloaded) ${MISSING}"`));
      await waitFor(() => details.some((detail) => detail.startsWith('(reloaded) ')), {
        timeoutMs: 10_000,
        what: 'the reloaded policy to serve',
      });
    } finally {
      stop = true;
      await Promise.all(clients);
    }
    expect(details.every((detail) => detail.endsWith("in organization 'acme' (your roles there: default, project-creator)"))).toBe(true);
    expect(retired.mock.contexts).toContain(old.engine);
    await oldExited;
    await deleteAcme();
    expect(serving().engine).not.toBe(old.engine);
  });

  it('denies what a stopped thread had in hand, never forwarding it, and serves the next request from a new thread', async () => {
    await deleteAcme();
    const { engine, thread } = serving();
    const before = forwardedCount();
    const inHand = Array.from({ length: 50 }, () => h.request('/orgs/acme', { token: alice }));
    await thread!.terminate();
    const statuses = (await Promise.all(inHand)).map((res) => res.status);
    expect(statuses.every((status) => status === 200 || status === 500)).toBe(true);
    expect(forwardedCount() - before).toBe(statuses.filter((status) => status === 200).length);
    expect((await h.request('/orgs/acme', { token: alice })).status).toBe(200);
    expect(serving().engine).toBe(engine);
    expect(serving().thread).not.toBe(thread);
  });
});
