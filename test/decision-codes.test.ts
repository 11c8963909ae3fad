// Reasons that can be counted (issue 13, item 6): every outcome carries a stable `code` and
// `params` beside the human reasons, set by the shipped policy or, for what the policy did not
// decide, by the gateway; records store them (hashed only when set, so older records keep
// verifying), denials return them, and a policy that sets none still works.
import net from 'node:net';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Command } from 'commander';
import type { Knex } from 'knex';
import { prepareDecision } from '../src/audit/chain/decision-chain';
import { verifyChain } from '../src/audit/chain/decision-chain-verifier';
import { PgDecisionQueryStore } from '../src/audit/store/pg-decision-query-store';
import { ConsoleStore } from '../src/admin/console/console-store';
import { filterOptions, parseFilterOptions } from '../src/cli/decisions-filter';
import { createDatabase, migrationConfig } from '../src/db/database';
import { appendDecisions, syntheticDecision } from './support/audit-helpers';
import { seedDirectory, type Directory } from './support/directory-fixtures';
import { startHarness, type Harness } from './support/gateway-harness';
import { scratchDir } from './support/policy-workspace';
import { createTestDatabase, type TestDatabase } from './support/test-database';
import { waitFor } from './support/wait-for';

const ADMIN = { authorization: 'Bearer test-admin-token-0123456789' };
// A lookup stuck on a lock fails after DB_TIMEOUT_MS; a shutdown cuts it after half its grace period, before.
const DB_TIMEOUT_MS = 5000;

interface CodedRow {
  allow: boolean;
  status: number;
  code: string | null;
  code_params: Record<string, unknown> | null;
}

interface ProblemBody {
  status: number;
  detail: string;
  code?: string;
  params?: Record<string, unknown>;
}

/** The stored record of a decision, once it is in PostgreSQL. */
const recordOf = (db: Knex, id: string) =>
  waitFor(() => db<CodedRow & { id: string }>('decisions').where({ id }).first('allow', 'status', 'code', 'code_params'), {
    timeoutMs: 15_000,
    what: `the record of ${id}`,
  });

describe('decision codes through the gateway (shipped policy)', () => {
  let database: TestDatabase;
  let h: Harness;
  let dir: Directory;
  let locker: Knex;
  const token = (name: string) => h.tokens.sign(`${name}|sub`);

  beforeAll(async () => {
    database = await createTestDatabase();
    dir = await seedDirectory(database.db);
    // Uncached with a short deadline, so a locked table makes a lookup fail (503) or wait (499, shutdown).
    h = await startHarness(
      {
        database: { url: database.url, timeout_ms: DB_TIMEOUT_MS },
        cache: { enabled: false },
        server: { host: '127.0.0.1', port: 0, upstream_timeout_ms: 2000, shutdown_grace_ms: 4000 },
      },
      { database },
    );
    locker = createDatabase({ url: database.url });
  }, 60_000);
  afterAll(async () => {
    await locker?.destroy();
    await h?.close();
    await database?.drop();
  });

  /** A denial: its problem+json carries the code and params, and so does its record. */
  async function expectCodedDenial(res: Response, status: number, code: string, params: Record<string, unknown>): Promise<ProblemBody> {
    expect(res.status).toBe(status);
    expect(res.headers.get('content-type')).toBe('application/problem+json');
    const body = (await res.json()) as ProblemBody;
    expect({ code: body.code, params: body.params }).toEqual({ code, params });
    expect(await recordOf(database.db, res.headers.get('x-portcullis-decision')!)).toEqual({
      allow: false,
      status,
      code,
      code_params: params,
    });
    return body;
  }

  /** Runs `body` while another session holds `table` exclusively. */
  async function whileLocked<T>(table: string, body: () => Promise<T>): Promise<T> {
    const trx = await locker.transaction();
    try {
      await trx.raw(`lock table ${table} in access exclusive mode`);
      return await body();
    } finally {
      await trx.rollback();
    }
  }

  const subjectLookupWaiting = () =>
    waitFor(
      async () => {
        const { rows } = await locker.raw<{ rows: unknown[] }>(
          `select 1 from pg_stat_activity where datname = current_database() and application_name = 'portcullis' and wait_event_type = 'Lock' and query like '%subject_user%'`,
        );
        return rows.length > 0;
      },
      { timeoutMs: 15_000, what: 'the subject lookup to wait on the lock' },
    );

  it('records an allow with `granted`, the permission and the organization it holds in', async () => {
    const res = await h.request('/orgs/acme/projects/api', { token: await token('alice') });
    expect(res.status).toBe(200);
    const id = res.headers.get('x-portcullis-decision')!;
    const granted = { action: 'project:read', permission: '*', organization: 'acme' };
    expect(await recordOf(database.db, id)).toEqual({ allow: true, status: 200, code: 'granted', code_params: granted });

    // What an auditor reads back: the admin API's detail, and its list filtered by code.
    const detail = (await (await fetch(`${h.gateway.adminUrl}/admin/v1/decisions/${id}`, { headers: ADMIN })).json()) as {
      code: string;
      code_params: unknown;
      result: unknown;
    };
    expect(detail).toMatchObject({ code: 'granted', code_params: granted });
    expect(detail.result).toEqual({
      allow: true,
      status: 200,
      reasons: ["granted by permission '*' in organization 'acme'"],
      code: 'granted',
      params: granted,
    });
  });

  it('returns and records the code of each kind of policy denial', async () => {
    await expectCodedDenial(
      await h.request('/orgs/acme/projects/api', { method: 'DELETE', token: await token('dave') }),
      403,
      'missing_permission',
      {
        permission: 'project:delete',
        organization: 'acme',
      },
    );
    await expectCodedDenial(await h.request('/orgs/globex', { token: await token('alice') }), 403, 'not_a_member', {
      organization: 'globex',
    });
    await expectCodedDenial(await h.request('/orgs/acme/projects', { token: await token('carol') }), 403, 'member_of_no_organization', {
      organization: 'acme',
    });
    await expectCodedDenial(await h.request('/orgs/acme/projects/nope', { token: await token('alice') }), 404, 'resource_not_found', {
      organization: 'acme',
      resources: { project: 'nope' },
    });
    await expectCodedDenial(await h.request(`/users/${dir.users.alice}`, { token: await token('carol') }), 403, 'profile_not_own', {
      action: 'profile:read',
    });
    await expectCodedDenial(
      await h.request(`/invitations/${dir.invitations.carol}/accept`, { method: 'POST', token: await token('erin') }),
      403,
      'invitation_not_addressed_to_you',
      {
        invitation: dir.invitations.carol,
      },
    );
    await expectCodedDenial(await h.request('/orgs', { token: await h.tokens.sign('stranger|sub') }), 403, 'not_registered', {
      subject: 'stranger|sub',
    });

    const conflict = await h.request('/orgs/acme', { method: 'DELETE', token: await token('alice') });
    expect(conflict.status).toBe(409);
    const body = (await conflict.json()) as ProblemBody;
    expect(body).toMatchObject({ code: 'organization_has_projects', params: { organization: 'acme', project_count: 2 } });
    expect([...(body.params!.projects as string[])].sort()).toEqual(['api', 'web']);
    expect(await recordOf(database.db, conflict.headers.get('x-portcullis-decision')!)).toMatchObject({
      code: 'organization_has_projects',
      code_params: body.params,
    });
  });

  it('records a dry run (POST /admin/v1/evaluate) with the code the policy gave', async () => {
    const res = await fetch(`${h.gateway.adminUrl}/admin/v1/evaluate`, {
      method: 'POST',
      headers: { ...ADMIN, 'content-type': 'application/json' },
      body: JSON.stringify({ subject: 'dave|sub', method: 'DELETE', path: '/orgs/acme/projects/api' }),
    });
    expect(res.status).toBe(200);
    const { decision_id: id } = (await res.json()) as { decision_id: string };
    expect(await recordOf(database.db, id)).toEqual({
      allow: false,
      status: 403,
      code: 'missing_permission',
      code_params: { permission: 'project:delete', organization: 'acme' },
    });
  });

  it('gives a 401 the gateway answers itself `unauthenticated`, in the answer and the record', async () => {
    await expectCodedDenial(await h.request('/orgs/acme'), 401, 'unauthenticated', {});
  });

  it('records a lookup that fails as `dependency_unavailable` (503)', async () => {
    const alice = await token('alice');
    const res = await whileLocked('users', () => h.request('/orgs/acme', { token: alice, signal: AbortSignal.timeout(10_000) }));
    await expectCodedDenial(res, 503, 'dependency_unavailable', {});
  }, 30_000);

  it('records a client that left before its answer as `client_gone` (499)', async () => {
    const alice = await token('alice');
    const { hostname, port } = new URL(h.gateway.gatewayUrl);
    await whileLocked('users', async () => {
      const socket = net.connect(Number(port), hostname);
      socket.on('error', () => undefined);
      socket.write(`GET /orgs/acme HTTP/1.1\r\nHost: x\r\nX-Request-Id: codes-gone\r\nAuthorization: Bearer ${alice}\r\n\r\n`);
      await subjectLookupWaiting();
      socket.destroy();
      await waitFor(() => database.db<{ id: string; request_id: string }>('decisions').where({ request_id: 'codes-gone' }).first('id'), {
        timeoutMs: 15_000,
        what: 'the 499 record',
      });
    });
    const row = await database
      .db<CodedRow & { request_id: string }>('decisions')
      .where({ request_id: 'codes-gone' })
      .first('status', 'code', 'code_params');
    expect(row).toEqual({ status: 499, code: 'client_gone', code_params: {} });
  }, 30_000);

  it('finds records by code: the admin API and the CLI filter', async () => {
    const res = await fetch(`${h.gateway.adminUrl}/admin/v1/decisions?code=missing_permission`, { headers: ADMIN });
    expect(res.status).toBe(200);
    const { decisions } = (await res.json()) as { decisions: { code: string; action: string }[] };
    expect(decisions.length).toBeGreaterThan(0);
    expect(new Set(decisions.map((d) => d.code))).toEqual(new Set(['missing_permission']));

    const options = filterOptions(new Command()).parse(['--code', 'not_a_member', '--since', '1h'], { from: 'user' }).opts();
    const filter = parseFilterOptions(options);
    expect(filter.code).toBe('not_a_member');
    const rows = await new PgDecisionQueryStore(database.db).list(filter, { limit: 50 });
    expect(rows.decisions.map((d) => [d.code, d.organization])).toEqual([['not_a_member', 'globex']]);

    // The console lists records through the same columns and row mapper: codes included.
    const listed = await new ConsoleStore(database.db).decisions({ code: 'not_a_member' }, { limit: 50 });
    expect(listed.decisions.map((d) => [d.code, d.organization])).toEqual([['not_a_member', 'globex']]);
  });

  // Last: it shuts this gateway down.
  it('records a request cut by a shutdown as `shutting_down`', async () => {
    const alice = await token('alice');
    const res = await whileLocked('users', async () => {
      const stuck = h.request('/orgs/acme', { token: alice, headers: { 'x-request-id': 'codes-shutdown' } });
      await subjectLookupWaiting();
      const closed = h.gateway.close();
      const answer = await stuck;
      await closed;
      return answer;
    });
    expect(res.status).toBe(503);
    expect(((await res.json()) as ProblemBody).code).toBe('shutting_down');
    const row = await database
      .db<CodedRow & { request_id: string }>('decisions')
      .where({ request_id: 'codes-shutdown' })
      .first('status', 'code');
    expect(row).toEqual({ status: 503, code: 'shutting_down' });
  }, 30_000);
});

describe('a policy that sets no code (one file defining only `decision`)', () => {
  let work: string;
  let h: Harness;

  beforeAll(async () => {
    work = await scratchDir('codes');
    const source = path.join(work, 'policies');
    await mkdir(source);
    await writeFile(
      path.join(source, 'policy.rego'),
      `package portcullis

default decision := {"allow": false, "status": 403, "reasons": ["closed"]}

decision := {"allow": true, "status": 200, "reasons": ["open"]} if input.action == "organization:read"

decision := {"allow": false, "status": 403, "reasons": ["coded badly"], "code": "Not Snake Case"} if input.action == "project:read"
`,
    );
    h = await startHarness({ policy: { source } });
    await seedDirectory(h.database.db);
  }, 60_000);
  afterAll(async () => {
    await h?.close();
    await rm(work, { recursive: true, force: true });
  });

  it('allows and denies as before, with no code in the answer or the record, and the chain verifies', async () => {
    const alice = await h.tokens.sign('alice|sub');
    const allowed = await h.request('/orgs/acme', { token: alice });
    expect(allowed.status).toBe(200);
    expect(await recordOf(h.database.db, allowed.headers.get('x-portcullis-decision')!)).toEqual({
      allow: true,
      status: 200,
      code: null,
      code_params: null,
    });

    const denied = await h.request('/orgs/acme/teams', { token: alice });
    expect(denied.status).toBe(403);
    const body = (await denied.json()) as ProblemBody;
    expect(body.detail).toBe('closed');
    expect(body).not.toHaveProperty('code');
    expect(body).not.toHaveProperty('params');
    expect(await recordOf(h.database.db, denied.headers.get('x-portcullis-decision')!)).toEqual({
      allow: false,
      status: 403,
      code: null,
      code_params: null,
    });

    expect(await verifyChain(new PgDecisionQueryStore(h.database.db))).toMatchObject({ ok: true });
  });

  it('refuses a code that is not snake_case as a policy error', async () => {
    const res = await h.request('/orgs/acme/projects/api', { token: await h.tokens.sign('alice|sub') });
    expect(res.status).toBe(403);
    const body = (await res.json()) as ProblemBody;
    expect(body.code).toBe('policy_error');
    expect(body.detail).toMatch(/^policy error: 'portcullis\/decision' has code "Not Snake Case", not a snake_case name/);
  });
});

const THIS_MIGRATION = '20261130000012_decision_codes.js';
const completed = async (from: Knex) =>
  ((await from.migrate.list(migrationConfig())) as [{ name: string }[], unknown[]])[0].map((migration) => migration.name);

/** Rolls back the migrations after this one, then this one. */
async function rollBackThisMigration(from: Knex): Promise<void> {
  while ((await completed(from)).includes(THIS_MIGRATION)) await from.migrate.down(migrationConfig());
}

describe('codes in the hash chain', () => {
  let chain: TestDatabase;
  beforeEach(async () => {
    chain = await createTestDatabase();
  });
  afterEach(async () => chain?.drop());

  it('hashes the code and params only when a record has them, so records from before them keep their hashes', () => {
    const old = syntheticDecision(1);
    expect(prepareDecision(old).content).not.toContain('code');
    expect(prepareDecision({ ...old, code: null, codeParams: null }).content).toBe(prepareDecision(old).content);
    const coded = prepareDecision({ ...old, code: 'granted', codeParams: { permission: '*', organization: 'acme' } }).content;
    expect(coded).toMatch(/^\{"id": "[0-9a-f-]+", "code": "granted", "path": /);
    expect(coded).toContain(', "request_id": "request-1", "code_params": {"permission": "*", "organization": "acme"}, "organization": ');
  });

  it('verifies a chain mixing records without and with codes, and detects an edited, added or removed code', async () => {
    await appendDecisions(chain.db, 3);
    await appendDecisions(chain.db, 3, 3, (n) => ({
      code: 'missing_permission',
      codeParams: { permission: 'project:delete', organization: 'acme', n },
    }));
    const query = new PgDecisionQueryStore(chain.db);
    expect(await verifyChain(query)).toMatchObject({ ok: true, checked: 6 });
    expect(await chain.db('decisions').orderBy('seq').pluck('code')).toEqual([
      null,
      null,
      null,
      'missing_permission',
      'missing_permission',
      'missing_permission',
    ]);

    await chain.db('decisions').where({ seq: 5 }).update({ code: 'granted' });
    expect(await verifyChain(query)).toMatchObject({ ok: false, broken: { seq: 5 } });
    await chain.db('decisions').where({ seq: 5 }).update({ code: 'missing_permission' });
    expect(await verifyChain(query)).toMatchObject({ ok: true, checked: 6 });

    await chain.db.raw(`update decisions set code_params = code_params || '{"organization": "globex"}' where seq = 4`);
    expect(await verifyChain(query)).toMatchObject({ ok: false, broken: { seq: 4 } });
    await chain.db.raw(`update decisions set code_params = code_params || '{"organization": "acme"}' where seq = 4`);

    await chain.db('decisions').where({ seq: 2 }).update({ code: 'granted' });
    expect(await verifyChain(query)).toMatchObject({ ok: false, broken: { seq: 2 } });
    await chain.db('decisions').where({ seq: 2 }).update({ code: null });
    await chain.db('decisions').where({ seq: 6 }).update({ code: null, code_params: null });
    expect(await verifyChain(query)).toMatchObject({ ok: false, broken: { seq: 6 } });
  });

  it('refuses to roll back while a record carries a code, which is part of its hash', async () => {
    await appendDecisions(chain.db, 1, 0, () => ({ code: 'granted', codeParams: {} }));
    await expect(rollBackThisMigration(chain.db)).rejects.toThrow(/refusing to roll back: 1 decision records carry a code/);
    expect(await completed(chain.db)).toContain(THIS_MIGRATION);
  });

  it('rolls back without coded records and migrates up again', async () => {
    await appendDecisions(chain.db, 2);
    await rollBackThisMigration(chain.db);
    expect(await chain.db.schema.hasColumn('decisions', 'code')).toBe(false);
    await chain.db.migrate.latest(migrationConfig());
    expect(await chain.db.schema.hasColumn('decisions', 'code_params')).toBe(true);
    expect(await verifyChain(new PgDecisionQueryStore(chain.db))).toMatchObject({ ok: true, checked: 2 });
  });
});
