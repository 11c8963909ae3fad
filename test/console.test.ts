// The console's guard rails over real HTTP: sign-in with the admin token, the signed session
// cookie and its attributes, CSRF refusal, the CSP on every page, redirects when signed out,
// and the rollup the overview reads, maintained by the migration's trigger.
import { INPUT_SQL } from '../src/audit/store/pg-decision-query-store';
import { seedDirectory } from './support/directory-fixtures';
import { startHarness, type Harness } from './support/gateway-harness';
import { waitFor } from './support/wait-for';

const TOKEN = 'test-admin-token-0123456789';

let harness: Harness;

beforeAll(async () => {
  harness = await startHarness();
  await seedDirectory(harness.database.db);
});

afterAll(async () => {
  await harness?.close();
});

const admin = (path: string, init: RequestInit = {}) => fetch(`${harness.gateway.adminUrl}${path}`, { redirect: 'manual', ...init });

function cookieOf(response: Response, name: string): string | undefined {
  for (const header of response.headers.getSetCookie()) {
    const [pair] = header.split(';');
    if (pair!.startsWith(`${name}=`)) return header;
  }
  return undefined;
}

async function signIn(token = TOKEN): Promise<{ response: Response; cookie: string | undefined }> {
  const form = await admin('/console/sign-in');
  const pre = cookieOf(form, 'portcullis_console_signin')!.split(';')[0]!;
  const csrf = /name="csrf" value="([^"]+)"/.exec(await form.text())![1]!;
  const response = await admin('/console/sign-in', {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: pre },
    body: new URLSearchParams({ csrf, token, next: '/console/decisions' }).toString(),
  });
  return { response, cookie: cookieOf(response, 'portcullis_console')?.split(';')[0] };
}

describe('the operator console', () => {
  it('redirects a signed-out browser to the sign-in form, keeping where it was going', async () => {
    const response = await admin('/console/decisions?outcome=denied');
    expect(response.status).toBe(303);
    expect(response.headers.get('location')).toBe(`/console/sign-in?next=${encodeURIComponent('/console/decisions?outcome=denied')}`);
  });

  it('sends a strict Content-Security-Policy with every page, the sign-in form included', async () => {
    for (const path of ['/console/sign-in', '/console/static/console.css']) {
      const csp = (await admin(path)).headers.get('content-security-policy') ?? '';
      expect(csp).toContain("default-src 'none'");
      expect(csp).toContain("script-src 'self'");
      expect(csp).not.toMatch(/unsafe-inline|unsafe-eval|https?:/);
    }
    const { cookie } = await signIn();
    const page = await admin('/console/', { headers: { cookie: cookie! } });
    expect(page.status).toBe(200);
    expect(page.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
    const body = await page.text();
    expect(body).not.toMatch(/<script(?![^>]*(src=|type="application\/json"))/);
    expect(body).not.toMatch(/ style=/);
  });

  it('refuses a wrong admin token and sets no session', async () => {
    const { response, cookie } = await signIn('not-the-admin-token-at-all');
    expect(response.status).toBe(303);
    expect(response.headers.get('location')).toMatch(/^\/console\/sign-in\?error=1/);
    expect(cookie).toBeUndefined();
  });

  it('trades the admin token for an HttpOnly, SameSite=Strict, expiring session cookie scoped to the console', async () => {
    const { response } = await signIn();
    expect(response.status).toBe(303);
    expect(response.headers.get('location')).toBe('/console/decisions');
    const header = cookieOf(response, 'portcullis_console')!;
    expect(header).toMatch(/; Path=\/console; HttpOnly; SameSite=Strict; Max-Age=28800$/);
    expect(header).not.toContain('Secure');
  });

  it('rejects a session cookie whose signature was altered', async () => {
    const { cookie } = await signIn();
    const tampered = cookie!.replace(/\.(\d+)\./, (_, expires: string) => `.${Number(expires) + 1000}.`);
    expect((await admin('/console/', { headers: { cookie: tampered } })).status).toBe(303);
    expect((await admin('/console/', { headers: { cookie: cookie! } })).status).toBe(200);
  });

  it('refuses a POST without the session CSRF token, and accepts it with the token', async () => {
    const { cookie } = await signIn();
    const refused = await admin('/console/policy/reload', {
      method: 'POST',
      headers: { cookie: cookie!, 'content-type': 'application/x-www-form-urlencoded' },
      body: 'csrf=forged',
    });
    expect(refused.status).toBe(403);
    const page = await (await admin('/console/policy', { headers: { cookie: cookie! } })).text();
    const csrf = /name="csrf" value="([^"]+)"/.exec(page)![1]!;
    const accepted = await admin('/console/policy/reload', {
      method: 'POST',
      headers: { cookie: cookie!, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ csrf }).toString(),
    });
    expect(accepted.status).toBe(200);
    expect(await accepted.text()).toMatch(/Unchanged: revision \S+ keeps serving/);
  });

  it('ends the session on sign-out: the same cookie no longer opens a page', async () => {
    const { cookie } = await signIn();
    const page = await (await admin('/console/', { headers: { cookie: cookie! } })).text();
    const csrf = /name="csrf" value="([^"]+)"/.exec(page)![1]!;
    const out = await admin('/console/sign-out', {
      method: 'POST',
      headers: { cookie: cookie!, 'content-type': 'application/x-www-form-urlencoded' },
      body: `csrf=${csrf}`,
    });
    expect(out.status).toBe(303);
    expect(cookieOf(out, 'portcullis_console')).toMatch(/Max-Age=0/);
    expect((await admin('/console/', { headers: { cookie: cookie! } })).status).toBe(303);
  });

  it('keeps the admin API on its bearer token: a console cookie opens nothing there', async () => {
    const { cookie } = await signIn();
    expect((await admin('/admin/v1/policy', { headers: { cookie: cookie! } })).status).toBe(401);
    expect((await admin('/admin/v1/policy', { headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(200);
  });

  it('counts recorded decisions per hour in the rollup and lists them on the decisions page with their filters', async () => {
    const token = await harness.tokens.sign('bob|sub');
    expect((await harness.request('/orgs/acme/projects/web', { method: 'DELETE', token })).status).toBe(403);
    expect((await harness.request('/orgs/acme', { token })).status).toBe(200);
    const rollup = await waitFor(async () => {
      const row = await harness.database
        .db('decision_hourly')
        .first<{ allowed: number; denied: number } | undefined>(
          harness.database.db.raw('sum(allowed)::int as allowed, sum(denied)::int as denied'),
        );
      return row && row.allowed >= 1 && row.denied >= 1 ? row : undefined;
    });
    expect(rollup).toEqual({ allowed: 1, denied: 1 });
    const { cookie } = await signIn();
    const page = await (await admin('/console/decisions?subject=bob%7Csub&outcome=denied', { headers: { cookie: cookie! } })).text();
    expect(page).toContain('project:delete');
    expect(page).not.toContain('organization:read</td>');
    const csv = await (
      await admin('/console/decisions/export.csv?subject=bob%7Csub&outcome=allowed', { headers: { cookie: cookie! } })
    ).text();
    const lines = csv.trim().split('\n');
    expect(lines[0]).toMatch(/^id,seq,time,/);
    expect(lines).toHaveLength(2);
    expect(lines[1]).toContain('organization:read');
    const { policy_revision: revision } = await harness.database
      .db('decision_revisions')
      .first<{ policy_revision: string }>('policy_revision');
    const byRevision = await (
      await admin(`/console/decisions?revision=${encodeURIComponent(revision)}&subject=bob%7Csub`, { headers: { cookie: cookie! } })
    ).text();
    expect(byRevision.match(/<tr data-seq=/g)).toHaveLength(2);
    const otherRevision = await (await admin('/console/decisions?revision=sha256:none', { headers: { cookie: cookie! } })).text();
    expect(otherRevision).not.toContain('<tr data-seq=');
  });

  it('replays a candidate bundle over the recorded window and reports the unchanged decisions', async () => {
    const { cookie } = await signIn();
    const page = await (await admin('/console/policy', { headers: { cookie: cookie! } })).text();
    const csrf = /name="csrf" value="([^"]+)"/.exec(page)![1]!;
    const post = (candidate: string) =>
      admin('/console/policy/replay', {
        method: 'POST',
        headers: { cookie: cookie!, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ csrf, candidate, since: '1h' }).toString(),
      });
    const replayed = await post(process.env.PORTCULLIS_TEST_BUNDLE!);
    expect(replayed.status).toBe(200);
    const served = Number(
      (await harness.database.db('decisions').where({ dry_run: false }).whereRaw(`${INPUT_SQL} is not null`).count({ n: '*' }).first())?.n,
    );
    expect(served).toBeGreaterThan(0);
    // Whitespace in the markup is the formatter's, not the reader's: compare the text as a browser shows it.
    expect((await replayed.text()).replace(/\s+/g, ' ')).toContain(`replayed ${served}, unchanged ${served}, changed 0`);
    const relative = await post('policies');
    expect(relative.status).toBe(400);
    expect(await relative.text()).toContain('candidate: &quot;policies&quot; is not an absolute path on the server');
  });

  it('explains a request for a subject given by e-mail and says which team and role grant an allow', async () => {
    const { cookie } = await signIn();
    const response = await admin(`/console/explain?subject=bob%40example.com&method=POST&path=/orgs/acme/projects`, {
      headers: { cookie: cookie! },
    });
    const page = await response.text();
    expect(response.status).toBe(200);
    expect(page).toContain('<span class="badge allowed">allowed 200</span>');
    expect(page).toMatch(/id="grant-path">team deployers \(role project-creator\)</);
    expect(page).toContain('npx portcullis explain --as bob@example.com POST /orgs/acme/projects');
  });

  it('shows a denied decision with its regression test, and explains it: same answer now, and the role and team that would allow it', async () => {
    const token = await harness.tokens.sign('bob|sub');
    const denied = await harness.request('/orgs/acme/projects/api', { method: 'DELETE', token });
    const { decision_id: id } = (await denied.json()) as { decision_id: string };
    await waitFor(async () => (await harness.database.db('decisions').first<{ id: string } | undefined>('id').where({ id })) ?? undefined);
    const { cookie } = await signIn();
    const detail = await (await admin(`/console/decisions/${id}`, { headers: { cookie: cookie! } })).text();
    expect(detail).toContain('package portcullis_regression_test');
    expect(detail).toContain(`test_decision_${id.replace(/-/g, '_')} if {`);
    const csrf = /name="csrf" value="([^"]+)"/.exec(detail)![1]!;
    const explained = await admin(`/console/decisions/${id}/explain`, {
      method: 'POST',
      headers: { cookie: cookie!, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ csrf }).toString(),
    });
    const page = await explained.text();
    expect(explained.status).toBe(200);
    expect(page.replace(/\s+/g, ' ')).toMatch(
      /id="rerun" class="same"> ?Re-run of the stored input against revision <code>[^<]+<\/code>: the same answer/,
    );
    expect(page).toContain('Missing permission: <code>project:delete</code> in acme');
    expect(page).toMatch(/role <strong>organization-admin<\/strong> \(built-in\)/);
  });

  it('answers a bad filter with the parameter named, not a server error', async () => {
    const { cookie } = await signIn();
    const response = await admin('/console/decisions?outcome=maybe', { headers: { cookie: cookie! } });
    expect(response.status).toBe(400);
    expect(await response.text()).toContain('outcome: must be one of allowed, denied, failed');
  });
});
