// No one can flood the decision log without an account: a whole gateway with
// audit.unauthenticated_per_minute at 5 and a clock the test moves, receiving tokenless
// requests from one client; the records beyond the limit become one summary per minute.
import { SUPPRESSED_ACTION } from '../src/audit/recording/unauthenticated-suppression';
import { seedDirectory } from './support/directory-fixtures';
import { startHarness, type Harness } from './support/gateway-harness';
import { waitFor } from './support/wait-for';

const START = Date.UTC(2026, 10, 30, 10, 0, 0);
const clock = { now: START + 1_000 };
let h: Harness;

beforeAll(async () => {
  h = await startHarness({ audit: { unauthenticated_per_minute: 5 } }, { now: () => clock.now });
  await seedDirectory(h.database.db);
});
afterAll(async () => h?.close());

const unauthenticated = () => h.database.db('decisions').where({ status: 401 }).whereNot({ action: SUPPRESSED_ACTION });
const summaries = () =>
  h.database
    .db<{ action: string; seq: string; reasons: string[] } & Record<string, unknown>>('decisions')
    .where({ action: SUPPRESSED_ACTION })
    .orderBy('seq');

async function tokenless(count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const res = await h.request('/orgs/acme/projects');
    await res.arrayBuffer();
    expect(res.status).toBe(401);
  }
}

describe('audit.unauthenticated_per_minute', () => {
  it('records 5 of 20 tokenless requests and, once the minute closes, one summary saying 15 were suppressed', async () => {
    await tokenless(20);
    await waitFor(async () => Number((await unauthenticated().count({ n: '*' }).first())?.n) === 5 || undefined, {
      timeoutMs: 15_000,
      what: 'the 5 recorded 401s',
    });
    expect(await summaries()).toEqual([]);

    clock.now = START + 60_000;
    const [summary] = await waitFor(async () => ((await summaries()).length > 0 ? await summaries() : undefined), {
      timeoutMs: 15_000,
      what: 'the summary of the closed minute',
    });
    expect(summary).toMatchObject({
      action: SUPPRESSED_ACTION,
      allow: false,
      status: 401,
      resource: { type: 'client', address: '127.0.0.1' },
      reasons: ['15 unauthenticated requests from 127.0.0.1 suppressed in the minute starting 2026-11-30T10:00:00.000Z'],
    });
    expect(await unauthenticated().count({ n: '*' })).toEqual([{ n: '5' }]);
  });

  it('starts counting afresh in the next minute and never limits authenticated requests', async () => {
    const alice = await h.tokens.sign('alice|sub');
    for (let i = 0; i < 8; i++) expect((await h.request('/orgs/acme', { token: alice })).status).toBe(200);
    await tokenless(6);
    const decisions = h.database.db('decisions');
    await waitFor(
      async () => Number((await decisions.clone().where({ subject: 'alice|sub' }).count({ n: '*' }).first())?.n) === 8 || undefined,
      { timeoutMs: 15_000, what: 'all 8 of alice’s decisions' },
    );
    clock.now = START + 120_000;
    const all = await waitFor(async () => ((await summaries()).length > 1 ? await summaries() : undefined), {
      timeoutMs: 15_000,
      what: 'the summary of the second minute',
    });
    expect(all[1]!.reasons).toEqual([
      '1 unauthenticated request from 127.0.0.1 suppressed in the minute starting 2026-11-30T10:01:00.000Z',
    ]);
    expect(await unauthenticated().count({ n: '*' })).toEqual([{ n: '10' }]);
  });
});
