// policy.evaluation: auto (the default) against a running gateway: a request that comes alone
// is judged inline (an idle policy thread would cost it two wake-ups, more than the
// evaluation), requests that overlap are judged in the policy thread, and /metrics says where.
import http from 'node:http';
import { seedDirectory } from './support/directory-fixtures';
import { startHarness, type Harness } from './support/gateway-harness';
import { ThreadedPolicyEngine } from '../src/authz/threaded-policy-engine';
import { WasmPolicyEngine } from '../src/authz/wasm-policy-engine';

let h: Harness;
let alice: string;

// The gateway runs in this process, so the engines' prototypes can be watched.
const offThread = jest.spyOn(ThreadedPolicyEngine.prototype, 'evaluateOffThread');
const inline = jest.spyOn(WasmPolicyEngine.prototype, 'evaluate');

beforeAll(async () => {
  h = await startHarness();
  await seedDirectory(h.database.db);
  alice = await h.tokens.sign('alice|sub');
});

afterAll(async () => {
  await h?.close();
});

/** portcullis_policy_evaluations_total by placement. */
async function placed(): Promise<Record<string, number>> {
  const text = await (await fetch(`${h.gateway.adminUrl}/metrics`)).text();
  const counts: Record<string, number> = {};
  for (const match of text.matchAll(/^portcullis_policy_evaluations_total\{placement="(\w+)"\} (\d+)$/gm))
    counts[match[1]!] = Number(match[2]);
  return counts;
}

/** A GET on a connection of its own, so that the requests really overlap. */
function get(path: string): Promise<number> {
  const { port } = new URL(h.gateway.gatewayUrl);
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, agent: false, headers: { authorization: `Bearer ${alice}` } }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      })
      .on('error', reject);
  });
}

describe('policy.evaluation: auto', () => {
  it('judges requests that come one at a time inline, and forwards them', async () => {
    offThread.mockClear();
    inline.mockClear();
    const before = await placed();
    for (let n = 0; n < 10; n++) expect(await get('/orgs/acme')).toBe(200);
    expect(offThread).not.toHaveBeenCalled();
    expect(inline).toHaveBeenCalledTimes(10);
    const after = await placed();
    expect(after.inline! - (before.inline ?? 0)).toBe(10);
    expect(after.thread ?? 0).toBe(before.thread ?? 0);
  });

  it('judges requests in the policy thread once they overlap, and answers every one', async () => {
    offThread.mockClear();
    const before = await placed();
    // Each request waits 300 ms at the upstream: the later ones arrive with many in flight.
    h.upstreams.organizations.handler = (_req, res) => setTimeout(() => res.end('{}'), 300);
    try {
      const statuses = await Promise.all(Array.from({ length: 60 }, () => get('/orgs/acme')));
      expect(new Set(statuses)).toEqual(new Set([200]));
    } finally {
      h.upstreams.organizations.handler = undefined;
    }
    expect(offThread.mock.calls.length).toBeGreaterThanOrEqual(20);
    const after = await placed();
    expect(after.thread! - (before.thread ?? 0)).toBe(offThread.mock.calls.length);
    expect(after.thread! + after.inline! - (before.thread ?? 0) - before.inline!).toBe(60);
  });
});
