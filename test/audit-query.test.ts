// Asking the decision log "who did what, when": the admin API (filters, cursor pages, one full
// record), `decisions query` in every format (saying when it truncates, `--all` streaming
// every record, `--user` by id, e-mail or sub, suggestions when nobody matches, quiet when
// piped into `head`), `decisions tail` following live traffic, and masking of stored inputs.
import { spawn } from 'node:child_process';
import { seedDirectory, type Directory } from './support/directory-fixtures';
import { INPUT_SQL } from '../src/audit/store/pg-decision-query-store';
import { prepareDecision } from '../src/audit/chain/decision-chain';
import { PgDecisionStore } from '../src/audit/chain/pg-decision-store';
import { appendDecisions, syntheticDecision, TEST_CHAIN } from './support/audit-helpers';
import { BIN, requireBuild, runCli, spawnCli } from './support/cli-process';
import { createTestDatabase, type TestDatabase } from './support/test-database';
import { startHarness, type Harness } from './support/gateway-harness';
import { waitFor } from './support/wait-for';

const ADMIN_TOKEN = 'test-admin-token-0123456789';

let h: Harness;
let dir: Directory;
let tokens: Record<'alice' | 'bob' | 'dave', string>;
/** The decisions made, in the order the requests were sent. */
const made: { id: string; subject: string | null; org: string; allow: boolean; status: number }[] = [];

async function send(path: string, who: keyof typeof tokens | null, method = 'GET'): Promise<string> {
  const res = await h.request(path, { method, ...(who ? { token: tokens[who] } : {}) });
  await res.arrayBuffer();
  const id = res.headers.get('x-portcullis-decision')!;
  const org = path.split('/')[2]!;
  made.push({ id, subject: who ? `${who}|sub` : null, org, allow: res.status === 200, status: res.status });
  return id;
}

beforeAll(async () => {
  requireBuild();
  h = await startHarness({ audit: { mask: ['/subject/email', '/facts/organization/project_slugs'] } });
  dir = await seedDirectory(h.database.db);
  tokens = { alice: await h.tokens.sign('alice|sub'), bob: await h.tokens.sign('bob|sub'), dave: await h.tokens.sign('dave|sub') };
  for (let round = 0; round < 4; round++) {
    await send('/orgs/acme', 'alice'); // allow
    await send('/orgs/acme', 'bob', 'DELETE'); // deny 403
    await send('/orgs/globex', 'dave'); // allow
    await send('/orgs/acme', null); // 401
    await send('/orgs/acme', 'alice', 'DELETE'); // deny 409
  }
  await waitFor(
    async () => {
      const res = await admin('/audit');
      return ((await res.json()) as { backlog: number }).backlog === 0;
    },
    { timeoutMs: 15_000, what: 'the decisions to be written' },
  );
});
afterAll(async () => h?.close());

const admin = (path: string) => fetch(`${h.gateway.adminUrl}/admin/v1${path}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });

interface Page {
  decisions: {
    id: string;
    seq: number;
    time: string;
    subject: string | null;
    organization: string | null;
    action: string;
    allow: boolean;
    status: number;
  }[];
  next_cursor: string | null;
}

async function list(query: string): Promise<Page> {
  const res = await admin(`/decisions${query}`);
  expect(res.status).toBe(200);
  return (await res.json()) as Page;
}

describe('GET /admin/v1/decisions', () => {
  it('lists decisions newest first', async () => {
    const page = await list('?limit=100');
    expect(page.decisions.map((decision) => decision.id)).toEqual(made.map((decision) => decision.id).reverse());
    expect(page.next_cursor).toBeNull();
  });

  it('walks every page with the cursor, without repeats or gaps', async () => {
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const page: Page = await list(`?limit=3${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
      seen.push(...page.decisions.map((decision) => decision.id));
      cursor = page.next_cursor;
      pages += 1;
    } while (cursor);
    expect(pages).toBe(Math.ceil(made.length / 3));
    expect(seen).toEqual(made.map((decision) => decision.id).reverse());
  });

  it('filters by subject, organization, action, outcome and time', async () => {
    expect((await list('?subject=bob%7Csub')).decisions.map((d) => d.status)).toEqual([403, 403, 403, 403]);
    expect((await list('?org=globex')).decisions.every((d) => d.organization === 'globex' && d.subject === 'dave|sub')).toBe(true);
    expect((await list('?action=organization:delete&allow=false')).decisions.map((d) => d.status).sort()).toEqual([
      403, 403, 403, 403, 409, 409, 409, 409,
    ]);
    expect((await list('?allow=true')).decisions).toHaveLength(8);
    const all = (await list('?limit=100')).decisions;
    const middle = all[10]!.time;
    const since = await list(`?since=${encodeURIComponent(middle)}&limit=100`);
    expect(since.decisions.every((d) => d.time >= middle)).toBe(true);
    const until = await list(`?until=${encodeURIComponent(middle)}&limit=100`);
    expect(since.decisions.length + until.decisions.length).toBe(made.length);
    expect((await list('?since=1h')).decisions).toHaveLength(made.length);
    expect((await list('?until=1h')).decisions).toHaveLength(0);
  });

  it('answers 400 for a malformed filter or cursor, naming it', async () => {
    for (const [query, message] of [
      ['?allow=maybe', 'allow: must be true or false'],
      ['?limit=0', 'limit: must be a whole number from 1 to 1000'],
      ['?since=tomorrow', 'since: "tomorrow" is neither'],
      ['?cursor=bm9wZQ', 'cursor: not a cursor this API returned'],
      ['?colour=blue', 'unknown parameter "colour"'],
    ]) {
      const res = await admin(`/decisions${query}`);
      expect(res.status).toBe(400);
      expect(res.headers.get('content-type')).toMatch(/application\/problem\+json/);
      expect(((await res.json()) as { detail: string }).detail).toContain(message);
    }
  });

  it('requires the admin token', async () => {
    expect((await fetch(`${h.gateway.adminUrl}/admin/v1/decisions`)).status).toBe(401);
    expect((await fetch(`${h.gateway.adminUrl}/admin/v1/decisions/${made[0]!.id}`)).status).toBe(401);
  });
});

describe('GET /admin/v1/decisions/{id}', () => {
  it('returns the full record with its masked input, its result and its place in the chain', async () => {
    const conflict = made.find((decision) => decision.status === 409)!;
    const res = await admin(`/decisions/${conflict.id}`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as Record<string, unknown>;
    expect(body).toMatchObject({
      id: conflict.id,
      subject: 'alice|sub',
      organization: 'acme',
      action: 'organization:delete',
      method: 'DELETE',
      path: '/orgs/acme',
      allow: false,
      status: 409,
      result: { allow: false, status: 409, reasons: [expect.stringContaining("organization 'acme' still has 2 projects") as unknown] },
      resource: { type: 'organization', org: 'acme' },
      prev_hash: expect.stringMatching(/^[0-9a-f]{64}$/) as unknown,
      hash: expect.stringMatching(/^[0-9a-f]{64}$/) as unknown,
    });
    // Its place in the chain is the stored one: the gateway's own chain and the position there.
    const stored = (await h.database.db('decisions').select('chain', 'chain_seq', 'hash').where({ id: conflict.id }).first()) as {
      chain: string;
      chain_seq: string;
      hash: string;
    };
    expect([body.chain, body.chain_seq, body.hash]).toEqual([stored.chain, Number(stored.chain_seq), stored.hash]);
    expect(body.chain).not.toBe('legacy');
    expect(body.input).toMatchObject({
      action: 'organization:delete',
      subject: { id: dir.users.alice, sub: 'alice|sub' },
      facts: { organization: { project_count: 2 } },
    });
  });

  it('never stores a masked value or the token', async () => {
    const rows = await h.database
      .db('decisions')
      .select<{ input: { subject?: Record<string, unknown> } | null; resource: unknown; subject: string | null }[]>(
        h.database.db.raw(`${INPUT_SQL} as input`),
        'resource',
        'subject',
      );
    const stored = JSON.stringify(rows);
    expect(stored).not.toContain('alice@example.com');
    expect(stored).not.toContain('"project_slugs"');
    for (const token of Object.values(tokens)) expect(stored).not.toContain(token);
    const withInput = rows.filter((row) => row.input !== null);
    expect(withInput.length).toBeGreaterThan(0);
    expect(withInput.every((row) => row.input?.subject && !('email' in row.input.subject))).toBe(true);
  });

  it('answers 404 problem+json for an unknown id or an unknown admin path', async () => {
    for (const path of ['/decisions/00000000-0000-4000-8000-000000000000', '/decisions/not-an-id', '/no-such-endpoint']) {
      const res = await admin(path);
      expect(res.status).toBe(404);
      expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      expect(await res.json()).toMatchObject({
        type: 'urn:portcullis:problem:not-found',
        title: 'Not Found',
        status: 404,
        detail: expect.any(String) as unknown,
      });
    }
  });

  it('shows the audit backlog', async () => {
    const body = (await (await admin('/audit')).json()) as Record<string, unknown>;
    expect(body).toMatchObject({
      mode: 'async',
      backlog: 0,
      memory: 0,
      spool: 0,
      spool_file: expect.stringMatching(/decisions\.ndjson$/) as unknown,
    });
  });
});

describe('portcullis decisions query', () => {
  const query = (...args: string[]) => runCli(['decisions', 'query', ...args], { DATABASE_URL: h.database.url });

  it('prints the same records as the API as JSON, NDJSON and CSV', async () => {
    const [json, ndjson, csv] = await Promise.all([
      query('--format', 'json', '--org', 'acme', '--allow', 'false', '--limit', '100'),
      query('--format', 'ndjson', '--org', 'acme', '--allow', 'false', '--limit', '100'),
      query('--format', 'csv', '--org', 'acme', '--allow', 'false', '--limit', '100'),
    ]);
    for (const run of [json, ndjson, csv]) expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
    const expected = made
      .filter((d) => d.org === 'acme' && !d.allow)
      .map((d) => d.id)
      .reverse();
    expect((JSON.parse(json.stdout) as { id: string }[]).map((d) => d.id)).toEqual(expected);
    expect(
      ndjson.stdout
        .trim()
        .split('\n')
        .map((line) => (JSON.parse(line) as { id: string }).id),
    ).toEqual(expected);
    const lines = csv.stdout.trim().split('\n');
    expect(lines[0]).toBe(
      'time,id,seq,request_id,subject,user_id,organization,action,method,path,allow,status,reasons,policy_revision,eval_latency_us,dry_run,code',
    );
    expect(lines.slice(1).map((line) => line.split(',')[1])).toEqual(expected);
    // The 409 reason has commas: quoted as RFC 4180 says.
    expect(csv.stdout).toMatch(/"organization 'acme' still has 2 projects \(api, web\); delete them first"/);
  });

  it('prints an aligned table by default and honours --limit across pages', async () => {
    const run = await query('--limit', '3');
    expect(run.code).toBe(0);
    const lines = run.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^TIME\s+DECISION\s+SUBJECT\s+ORG\s+ACTION\s+REQUEST\s+OUTCOME\s+CODE\s+REASON$/);
    expect(lines).toHaveLength(4);
    expect(lines[1]).toContain(made[made.length - 1]!.id);
    expect(lines[1]!.indexOf('DELETE /orgs/acme')).toBe(lines[0]!.indexOf('REQUEST'));
  });

  it('reads a time without an offset as UTC, like a date, whatever the time zone of the machine', async () => {
    const all = (await list('?limit=100')).decisions;
    const middle = all[10]!.time; // ISO-8601 UTC, e.g. 2026-11-30T10:00:00.123Z
    const count = async (since: string, tz: string) => {
      const run = await runCli(['decisions', 'query', '--format', 'ndjson', '--limit', '100', '--since', since], {
        DATABASE_URL: h.database.url,
        TZ: tz,
      });
      expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
      return run.stdout.trim().split('\n').filter(Boolean).length;
    };
    const expected = all.filter((decision) => decision.time >= middle).length;
    expect(await count(middle, 'UTC')).toBe(expected);
    expect(await count(middle.slice(0, -1), 'America/New_York')).toBe(expected);
    expect(await count(middle.slice(0, -1).replace('T', ' '), 'Asia/Kolkata')).toBe(expected);
    expect((await list(`?since=${encodeURIComponent(middle.slice(0, -1))}&limit=100`)).decisions).toHaveLength(expected);
  });

  it('refuses an unknown format', async () => {
    const run = await query('--format', 'xml');
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/--format: must be one of table, json, ndjson, csv/);
  });

  it('says on stderr when it leaves records out, and nothing when it does not', async () => {
    const cut = await query('--limit', '3', '--format', 'ndjson');
    expect(cut.code).toBe(0);
    expect(cut.stdout.trim().split('\n')).toHaveLength(3);
    expect(cut.stderr).toBe(`3 of ${made.length} shown: --limit N or --all\n`);
    const whole = await query('--limit', String(made.length), '--format', 'ndjson');
    expect({ code: whole.code, stderr: whole.stderr }).toEqual({ code: 0, stderr: '' });
  });

  it('finds a person by users.id, e-mail or token sub with --user', async () => {
    const bobs = made
      .filter((d) => d.subject === 'bob|sub')
      .map((d) => d.id)
      .reverse();
    for (const user of [dir.users.bob, 'bob@example.com', 'BOB@Example.com', 'bob|sub']) {
      const run = await query('--user', user, '--format', 'ndjson', '--limit', '100');
      expect({ user, code: run.code, stderr: run.stderr }).toEqual({ user, code: 0, stderr: '' });
      expect(
        run.stdout
          .trim()
          .split('\n')
          .map((line) => (JSON.parse(line) as { id: string }).id),
      ).toEqual(bobs);
    }
  });

  it('suggests close matches when nobody matches a subject or user', async () => {
    const bob = await query('--subject', 'bob');
    expect(bob.code).toBe(0);
    expect(bob.stdout.trim().split('\n')).toHaveLength(1); // the header
    expect(bob.stderr).toBe("0 rows for 'bob'; did you mean 'bob|sub'?\n");
    const typo = await query('--user', 'ALICE', '--org', 'globex');
    expect(typo.stderr).toBe("0 rows for 'ALICE'; did you mean 'alice|sub'?\n");
    const nobody = await query('--user', 'zed');
    expect(nobody.stderr).toBe("0 rows for 'zed'; no subject or e-mail like it in the directory or in these records\n");
  });
});

describe('portcullis decisions query over many pages', () => {
  let database: TestDatabase;
  const COUNT = 2_345;
  beforeAll(async () => {
    database = await createTestDatabase();
    await appendDecisions(database.db, COUNT);
  });
  afterAll(async () => database?.drop());
  const run = (...args: string[]) => runCli(['decisions', 'query', ...args], { DATABASE_URL: database.url });

  it('counts what it left out', async () => {
    const cut = await run('--format', 'csv');
    expect(cut.code).toBe(0);
    expect(cut.stdout.trim().split('\n')).toHaveLength(51);
    expect(cut.stderr).toBe('50 of 2,345 shown: --limit N or --all\n');
  });

  it.each(['ndjson', 'json', 'csv', 'table'])('prints every record with --all, page by page, as %s', async (format) => {
    const all = await run('--all', '--format', format);
    expect({ code: all.code, stderr: all.stderr }).toEqual({ code: 0, stderr: '' });
    const lines = all.stdout.trimEnd().split('\n');
    if (format === 'ndjson' || format === 'json') {
      const seqs = (
        format === 'json' ? (JSON.parse(all.stdout) as { seq: number }[]) : lines.map((line) => JSON.parse(line) as { seq: number })
      ).map((d) => d.seq);
      expect(seqs).toEqual(Array.from({ length: COUNT }, (_, i) => COUNT - i));
    } else {
      expect(lines).toHaveLength(COUNT + 1);
      expect(lines.filter((line) => /^(time,|TIME )/.test(line))).toHaveLength(1);
    }
  });

  it('ends quietly with exit 0 when the reader closes the pipe (`| head -1`), in every command that prints a lot', async () => {
    const piped = (args: string) =>
      new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
        const child = spawn('bash', ['-c', `set -o pipefail; "${process.execPath}" "${BIN}" ${args} | head -1`], {
          env: { ...process.env, DATABASE_URL: database.url, PORTCULLIS_CONFIG: '', PORTCULLIS_STATE_DIR: '' },
        });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
        child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
        child.on('close', (code) => resolve({ code, stdout, stderr }));
      });
    for (const args of [
      'decisions query --all --format ndjson',
      'decisions query --limit 2345',
      'decisions export --since 2000-01-01 --format csv',
    ]) {
      const run = await piped(args);
      expect({ args, code: run.code, stderr: run.stderr, lines: run.stdout.trim().split('\n').length }).toEqual({
        args,
        code: 0,
        stderr: '',
        lines: 1,
      });
    }
  });
});

describe('portcullis decisions tail', () => {
  it('prints the latest decisions, then each new one as it is recorded, until SIGINT', async () => {
    const child = spawnCli(['decisions', 'tail', '--format', 'ndjson', '--last', '2', '--interval', '200'], {
      DATABASE_URL: h.database.url,
    });
    let stdout = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    try {
      const ids = () =>
        stdout
          .trim()
          .split('\n')
          .filter(Boolean)
          .map((line) => (JSON.parse(line) as { id: string }).id);
      await waitFor(() => ids().length >= 2, { timeoutMs: 15_000, what: 'the last two decisions' });
      expect(ids()).toEqual(made.slice(-2).map((d) => d.id));
      const fresh = await send('/orgs/globex', 'dave');
      const other = await send('/orgs/acme', null);
      await waitFor(() => ids().length >= 4, { timeoutMs: 15_000, what: `tail to print ${fresh}` });
      expect(ids().slice(2)).toEqual([fresh, other]);
    } finally {
      child.kill('SIGINT');
    }
    expect(await exited).toBe(0);
    expect(stderr).toBe('');
  });
});

describe('pages keyed by seq', () => {
  const store = () => new PgDecisionStore(h.database.db, TEST_CHAIN);
  const cursorOf = async (query: string) => (await list(query)).next_cursor!;

  it('puts a record committed late above every page read before it, never below one', async () => {
    const before = await list('?limit=3');
    // Stamped an hour ago (a spool replayed, a slow clock) but committed now.
    const late = syntheticDecision(0, { time: new Date(Date.now() - 3_600_000), subject: 'late|sub', organization: 'acme' });
    await store().append([prepareDecision(late)]);
    const after = await list('?limit=3');
    expect(after.decisions[0]!.id).toBe(late.id);
    expect(after.decisions[0]!.seq).toBeGreaterThan(before.decisions[0]!.seq);
    expect(after.decisions.slice(1).map((d) => d.id)).toEqual(before.decisions.slice(0, 2).map((d) => d.id));
    // A walk begun before the commit goes on below where it stopped: no repeats, nothing reordered.
    const rest = await list(`?limit=100&cursor=${encodeURIComponent(before.next_cursor!)}`);
    expect(rest.decisions.map((d) => d.seq)).toEqual([...rest.decisions.map((d) => d.seq)].sort((a, b) => b - a));
    expect(rest.decisions.every((d) => d.seq < before.decisions[2]!.seq)).toBe(true);
  });

  it('keeps a relative window as the first page resolved it, on every later page', async () => {
    const stamped = Date.now() - 1_000;
    await store().append(
      [0, 1, 2].map((n) => prepareDecision(syntheticDecision(n, { time: new Date(stamped + n), subject: 'window|sub' }))),
    );
    const query = '?subject=window%7Csub&since=3s&limit=1';
    const first = await list(query);
    expect(first.decisions).toHaveLength(1);
    // Now `since=3s` alone would exclude them all.
    await waitFor(() => Date.now() > stamped + 3_100, { timeoutMs: 15_000, what: 'the records to fall out of a fresh 3 s window' });
    expect((await list(query)).decisions).toHaveLength(0);
    const second = await list(`${query}&cursor=${encodeURIComponent(first.next_cursor!)}`);
    const third = await list(`${query}&cursor=${encodeURIComponent(second.next_cursor!)}`);
    expect([...first.decisions, ...second.decisions, ...third.decisions].map((d) => d.time)).toEqual(
      [2, 1, 0].map((n) => new Date(stamped + n).toISOString()),
    );
    expect(third.next_cursor).toBeNull();
  });

  it('refuses a cursor used with other filters, or whose window was edited, with 400 naming cursor', async () => {
    const cursor = await cursorOf('?org=acme&limit=1');
    expect((await admin(`/decisions?org=acme&limit=1&cursor=${cursor}`)).status).toBe(200);
    const state = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as Record<string, unknown>;
    const edited = Buffer.from(JSON.stringify({ ...state, since: '2020-01-01T00:00:00.000Z' })).toString('base64url');
    for (const query of [
      `?org=globex&cursor=${cursor}`,
      `?org=acme&since=1h&cursor=${cursor}`,
      `?org=acme&allow=true&cursor=${cursor}`,
      `?org=acme&cursor=${edited}`,
    ]) {
      const res = await admin(`/decisions${query}`);
      expect(res.status).toBe(400);
      expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      expect(((await res.json()) as { detail: string }).detail).toMatch(/^cursor: /);
    }
  });

  it('pages `decisions query` by seq too', async () => {
    const run = await runCli(['decisions', 'query', '--format', 'ndjson', '--limit', '4'], { DATABASE_URL: h.database.url });
    expect(run.code).toBe(0);
    const seqs = run.stdout
      .trim()
      .split('\n')
      .map((line) => (JSON.parse(line) as { seq: number }).seq);
    expect(seqs).toEqual((await list('?limit=4')).decisions.map((d) => d.seq));
    expect(seqs).toEqual([...seqs].sort((a, b) => b - a));
  });
});
