// Decision records shipped in OPA's decision-log format: to a real HTTP collector on loopback
// that speaks OPA's `decision_logs` protocol (gzip'd JSON arrays), through its failures, and
// to a file. And `decisions export`: a window of the chain as NDJSON or CSV that
// `decisions verify --file` checks offline, tampered lines, cut files and `--expect`.
import { generateKeyPairSync } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { CheckpointSigner } from '../src/audit/chain/checkpoint-key';
import { DecisionCheckpointer } from '../src/audit/chain/decision-checkpointer';
import { PgDecisionCheckpointStore } from '../src/audit/chain/pg-decision-checkpoint-store';
import { appendDecisions, TEST_CHAIN } from './support/audit-helpers';
import { requireBuild, runCli } from './support/cli-process';
import { seedDirectory, type Directory } from './support/directory-fixtures';
import { startHarness, type Harness } from './support/gateway-harness';
import { createTestDatabase, type TestDatabase } from './support/test-database';
import { waitFor } from './support/wait-for';

/** A line of an NDJSON export: a record (with chain, seq, prev_hash, hash) or the export_end. */
type ExportedLine = Record<string, unknown> & { chain?: string; seq?: number; id?: string; prev_hash?: string; hash?: string };

/** An OPA decision event as the collector received it (the fields these tests read). */
interface CollectedEvent {
  decision_id: string;
  input?: { subject?: { email?: unknown } };
  [field: string]: unknown;
}

interface Collector {
  url: string;
  posts: { headers: http.IncomingHttpHeaders; events: CollectedEvent[] }[];
  /** Answer this many of the next POSTs with 503. */
  failNext: number;
  close(): Promise<void>;
}

async function startCollector(): Promise<Collector> {
  const collector: Collector = { url: '', posts: [], failNext: 0, close: () => Promise.resolve() };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      if (collector.failNext > 0) {
        collector.failNext -= 1;
        res.writeHead(503).end();
        return;
      }
      const body = req.headers['content-encoding'] === 'gzip' ? gunzipSync(Buffer.concat(chunks)) : Buffer.concat(chunks);
      collector.posts.push({ headers: req.headers, events: JSON.parse(body.toString('utf8')) as CollectedEvent[] });
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  collector.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  collector.close = () => new Promise((resolve) => server.close(() => resolve()));
  return collector;
}

let scratch: string;
beforeAll(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), 'portcullis-export-'));
});
afterAll(async () => rm(scratch, { recursive: true, force: true }));

describe('export to an OPA decision_logs collector over HTTP', () => {
  let h: Harness;
  let collector: Collector;
  let dir: Directory;
  let alice: string;

  beforeAll(async () => {
    collector = await startCollector();
    h = await startHarness({
      audit: {
        mask: ['/subject/email'],
        export: {
          kind: 'http',
          url: `${collector.url}/logs`,
          headers: { authorization: 'Bearer collector-secret' },
          flush_interval_ms: 50,
          labels: { region: 'test' },
        },
      },
    });
    dir = await seedDirectory(h.database.db);
    alice = await h.tokens.sign('alice|sub');
  });
  afterAll(async () => {
    await h?.close();
    await collector?.close();
  });

  const events = () => collector.posts.flatMap((post) => post.events);

  it('POSTs gzip-compressed JSON arrays of OPA decision events', async () => {
    const allowed = await h.request('/orgs/acme', { token: alice });
    const conflict = await h.request('/orgs/acme', { method: 'DELETE', token: alice });
    const anonymous = await h.request('/orgs/acme');
    const idOf = (res: Response) => res.headers.get('x-portcullis-decision')!;
    const wanted = [allowed, conflict, anonymous].map(idOf);
    await waitFor(() => wanted.every((id) => events().some((event) => event.decision_id === id)), {
      timeoutMs: 15_000,
      what: 'the events to reach the collector',
    });

    const post = collector.posts[0]!;
    expect(post.headers['content-encoding']).toBe('gzip');
    expect(post.headers['content-type']).toBe('application/json');
    expect(post.headers.authorization).toBe('Bearer collector-secret');
    expect(post.headers['x-portcullis-decision']).toBeUndefined();

    const byId = new Map(events().map((event) => [event.decision_id, event]));
    const revision = (
      await h.database
        .db<{ id: string; policy_revision: string }>('decisions')
        .where({ id: idOf(allowed) })
        .first('policy_revision')
    )?.policy_revision;
    expect(byId.get(idOf(conflict))).toEqual({
      decision_id: idOf(conflict),
      path: 'portcullis/decision',
      input: expect.objectContaining({ action: 'organization:delete', resource: { type: 'organization', org: 'acme' } }) as unknown,
      result: {
        allow: false,
        status: 409,
        reasons: [expect.stringContaining('still has 2 projects') as unknown],
        code: 'organization_has_projects',
        params: { organization: 'acme', project_count: 2, projects: ['api', 'web'] },
      },
      timestamp: expect.stringMatching(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/) as unknown,
      bundles: { portcullis: { revision } },
      labels: {
        id: expect.stringMatching(/^[0-9a-f-]{36}$/) as unknown,
        app: 'portcullis',
        version: expect.any(String) as unknown,
        region: 'test',
      },
      metrics: { timer_rego_query_eval_ns: expect.any(Number) as unknown },
    });
    expect(byId.get(idOf(allowed))).toMatchObject({
      result: { allow: true, status: 200 },
      input: { subject: { id: dir.users.alice, sub: 'alice|sub' } },
    });
    // Masked values are not exported either.
    expect(byId.get(idOf(allowed))!.input?.subject).toBeDefined();
    expect(byId.get(idOf(allowed))!.input?.subject?.email).toBeUndefined();
    // A request refused before the policy was asked has no input.
    expect(byId.get(idOf(anonymous))).toMatchObject({ result: { allow: false, status: 401 } });
    expect('input' in byId.get(idOf(anonymous))!).toBe(false);
    expect(JSON.stringify(events())).not.toContain(alice);
  });

  it('exports what the gateway recorded so that it verifies offline, as NDJSON and as CSV', async () => {
    requireBuild();
    await (await h.request('/orgs/acme', { token: alice })).arrayBuffer();
    await (await h.request('/orgs/acme', { method: 'DELETE', token: alice })).arrayBuffer();
    const backlog = async () =>
      (
        (await (
          await fetch(`${h.gateway.adminUrl}/admin/v1/audit`, { headers: { authorization: 'Bearer test-admin-token-0123456789' } })
        ).json()) as { backlog: number }
      ).backlog;
    await waitFor(async () => (await backlog()) === 0, { timeoutMs: 15_000, what: 'the decisions to be written' });
    const stored = Number((await h.database.db('decisions').count({ n: '*' }).first())!.n);
    for (const format of ['ndjson', 'csv']) {
      const exported = await runCli(['decisions', 'export', '--since', '1h', '--format', format], { DATABASE_URL: h.database.url });
      expect({ code: exported.code, stderr: exported.stderr }).toEqual({ code: 0, stderr: '' });
      const file = path.join(scratch, `gateway.${format}`);
      await writeFile(file, exported.stdout);
      const verified = await runCli(['decisions', 'verify', '--file', file]);
      expect({ code: verified.code, stderr: verified.stderr }).toEqual({ code: 0, stderr: '' });
      expect(verified.stdout).toMatch(
        new RegExp(`^verified ${stored} decision records in gateway\\.${format} \\(${format}, seq 1 to ${stored},`),
      );
    }
  });

  it('retries while the collector fails, and delivers every event', async () => {
    collector.failNext = 3;
    const sent: string[] = [];
    for (let n = 0; n < 5; n++) {
      const res = await h.request('/orgs/acme', { token: alice });
      await res.arrayBuffer();
      sent.push(res.headers.get('x-portcullis-decision')!);
    }
    await waitFor(() => sent.every((id) => events().some((event) => event.decision_id === id)), {
      timeoutMs: 15_000,
      what: 'the events to arrive after the failures',
    });
    expect(collector.failNext).toBe(0);
  });
});

describe('export to a file', () => {
  it('appends one OPA decision event per line', async () => {
    const file = path.join(scratch, 'out', 'decisions.ndjson');
    const h = await startHarness({ audit: { export: { kind: 'file', path: file, flush_interval_ms: 50 } } });
    try {
      await seedDirectory(h.database.db);
      const token = await h.tokens.sign('alice|sub');
      const ids: string[] = [];
      for (const path of ['/orgs/acme', '/orgs/globex']) ids.push((await h.request(path, { token })).headers.get('x-portcullis-decision')!);
      const lines = await waitFor(
        async () => {
          const text = await readFile(file, 'utf8').catch(() => '');
          const parsed = text
            .split('\n')
            .filter(Boolean)
            .map((line) => JSON.parse(line) as { decision_id: string; path: string });
          return parsed.length >= 2 && parsed;
        },
        { timeoutMs: 15_000, what: 'the file to be written' },
      );
      expect(lines.map((line) => line.decision_id)).toEqual(ids);
      expect(lines.every((line) => line.path === 'portcullis/decision')).toBe(true);
    } finally {
      await h.close();
    }
  });
});

describe('portcullis decisions export and verify --file', () => {
  let database: TestDatabase;
  let publicKeyFile: string;
  let otherPublicKeyFile: string;
  const run = (...args: string[]) => runCli(['decisions', ...args], { DATABASE_URL: database.url });
  const WINDOW = ['--since', '2026-11-28T12:00:00Z', '--until', '2026-11-28T12:02:30Z'];
  /** Records 1-150 are in the window (12:00:00 + n s); the checkpoints sign seq 100 and 200. */
  const exportTo = async (format: 'ndjson' | 'csv', ...extra: string[]) => {
    const result = await run('export', ...WINDOW, '--format', format, ...extra);
    expect({ code: result.code, stderr: result.stderr }).toEqual({ code: 0, stderr: '' });
    const file = path.join(scratch, `export-${format}-${Math.random().toString(36).slice(2)}.${format}`);
    await writeFile(file, result.stdout);
    return { file, text: result.stdout };
  };
  const verifyFile = (file: string, ...extra: string[]) => run('verify', '--file', file, ...extra);
  const editLine = (text: string, index: number, edit: (line: string) => string) => {
    const lines = text.split('\n');
    const edited = edit(lines[index]!);
    expect(edited).not.toBe(lines[index]);
    lines[index] = edited;
    return lines.join('\n');
  };

  beforeAll(async () => {
    requireBuild();
    const pair = generateKeyPairSync('ed25519');
    publicKeyFile = path.join(scratch, 'checkpoint.pub.pem');
    await writeFile(publicKeyFile, pair.publicKey.export({ type: 'spki', format: 'pem' }));
    otherPublicKeyFile = path.join(scratch, 'other.pub.pem');
    await writeFile(otherPublicKeyFile, generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }));
    database = await createTestDatabase();
    const clock = [new Date('2026-11-28T12:01:41Z'), new Date('2026-11-28T12:03:21Z')];
    const checkpointer = new DecisionCheckpointer(new PgDecisionCheckpointStore(database.db), new CheckpointSigner(pair.privateKey), {
      chain: TEST_CHAIN,
      intervalMs: 60_000,
      now: () => clock.shift() ?? new Date(),
      onError: (error) => {
        throw error;
      },
    });
    // Values a lossy export would change: no subject, a formula-like path, commas, quotes and
    // line breaks in a reason, a leading quote, non-ASCII text, fractions and large numbers.
    const awkward = (n: number) =>
      n === 7
        ? {
            subject: null,
            userId: null,
            path: '=HYPERLINK("http://x")',
            reasons: ['line one\nline two, "quoted"', "'already quoted", ''],
            dryRun: true,
            input: { note: 'café ✓', ratio: 1.5, big: 1e21, negative: -2, nothing: null, list: [] },
          }
        : n === 8
          ? {
              organization: '',
              policyRevision: '-rev',
              evalLatencyUs: null,
              directoryVersion: 12,
              code: 'missing_permission',
              codeParams: { permission: 'project:delete', ratio: 0.25 },
            }
          : {};
    await appendDecisions(database.db, 100, 0, awkward);
    await checkpointer.checkpoint();
    await appendDecisions(database.db, 100, 100, awkward);
    await checkpointer.checkpoint();
    await appendDecisions(database.db, 20, 200);
  });
  afterAll(async () => database?.drop());

  it('writes every record of the window with seq, prev_hash and hash, and ends with the head and the newest checkpoint in it', async () => {
    const { text } = await exportTo('ndjson');
    const lines = text
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as ExportedLine);
    const records = lines.slice(0, -1);
    expect(records.map((record) => record.seq)).toEqual(Array.from({ length: 150 }, (_, i) => i + 1));
    const stored = await database
      .db<{ seq: number; id: string; prev_hash: string; hash: string }>('decisions')
      .where('seq', '<=', 150)
      .orderBy('seq')
      .select('id', 'prev_hash', 'hash');
    expect(records.map((record) => [record.id, record.prev_hash, record.hash])).toEqual(
      stored.map((row) => [row.id, row.prev_hash, row.hash]),
    );
    expect(records[7]).toMatchObject({ subject: null, dry_run: true, input: { note: 'café ✓', ratio: 1.5 } });
    expect(records.every((record) => record.chain === TEST_CHAIN)).toBe(true);
    expect(lines[lines.length - 1]).toEqual({
      export_end: {
        records: 150,
        chains: [
          {
            chain: TEST_CHAIN,
            records: 150,
            first_seq: 1,
            head: { seq: 150, hash: stored[149]!.hash },
            checkpoint: {
              seq: 100,
              hash: stored[99]!.hash,
              signed_at: '2026-11-28T12:01:41.000Z',
              prev_seq: null,
              key_id: expect.any(String) as unknown,
              signature: expect.any(String) as unknown,
            },
          },
        ],
        exported_at: expect.any(String) as unknown,
      },
    });
  });

  it.each(['ndjson', 'csv'] as const)('verifies an untouched %s export offline, with its signed checkpoint', async (format) => {
    const { file } = await exportTo(format);
    // No database at all: an address nothing listens on.
    const offline = await runCli(['decisions', 'verify', '--file', file, '--public-key', publicKeyFile], {
      DATABASE_URL: 'postgres://nobody:nothing@127.0.0.1:1/none',
    });
    expect({ code: offline.code, stderr: offline.stderr }).toEqual({ code: 0, stderr: '' });
    expect(offline.stdout).toMatch(
      new RegExp(
        `^verified 150 decision records in \\S+ \\(${format}, seq 1 to 150, head hash [0-9a-f]{64}\\): the export is intact; the signed checkpoint of seq 100 \\(signed 2026-11-28T12:01:41.000Z\\) holds\\n$`,
      ),
    );
    const unsigned = await verifyFile(file);
    expect(unsigned.code).toBe(0);
    expect(unsigned.stdout).toContain('matches (signature not checked: pass --public-key)');
  });

  it('keeps CSV cells safe for a spreadsheet and still lossless', async () => {
    const { text } = await exportTo('csv');
    expect(text.split('\n')[0]).toBe(
      'chain,seq,prev_hash,hash,id,time,request_id,subject,user_id,organization,action,method,path,allow,status,reasons,policy_revision,eval_latency_us,dry_run,directory_version,code,code_params,resource,input,more,export_end',
    );
    expect(text).toContain(`"'=HYPERLINK(""http://x"")"`);
    expect(text).toContain(',"",'); // organization '' is not null
    expect(text).toContain("'-rev");
  });

  it.each([
    [
      'an edited field (ndjson)',
      'ndjson',
      (text: string) => editLine(text, 2, (line) => line.replace('"allow": true', '"allow": false')),
      /^portcullis: the export is broken at line 3 \(seq 3\): content edited: the hash does not match the record \(or it was moved from another chain\); in chain test-instance, 2 records before it verified\n$/,
    ],
    [
      'an edited cell (csv)',
      'csv',
      (text: string) => editLine(text, 3, (line) => line.replace(',GET,', ',DELETE,')),
      /^portcullis: the export is broken at line 4 \(seq 3\): content edited/,
    ],
    [
      'a deleted line',
      'ndjson',
      (text: string) =>
        text
          .split('\n')
          .filter((_, i) => i !== 9)
          .join('\n'),
      /line 10 \(seq 11\): gap in seq: seq 10 is missing/,
    ],
    [
      'a cut end',
      'ndjson',
      (text: string) => text.split('\n').slice(0, 120).join('\n'),
      /line 120 \(seq 120\): the file does not end with its export_end line: it was cut short/,
    ],
    [
      'records cut with the end kept',
      'ndjson',
      (text: string) =>
        text
          .split('\n')
          .filter((_, i) => i < 140 || i >= 150)
          .join('\n'),
      /the export_end line says 150 records \(test-instance: 150 ending at seq 150\), but the file holds 140 \(test-instance: 140 ending at seq 140\)/,
    ],
  ])('exits 1 for %s, naming the line', async (_what, format, tamper, message) => {
    const { file, text } = await exportTo(format as 'ndjson' | 'csv');
    await writeFile(file, tamper(text));
    const result = await verifyFile(file);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(message);
  });

  it('exits 1 when the checkpoint in the export does not hold for the key, and 2 when the file cannot be checked', async () => {
    const { file } = await exportTo('ndjson');
    const other = await verifyFile(file, '--public-key', otherPublicKeyFile);
    expect(other.code).toBe(1);
    expect(other.stderr).toMatch(/the signature of the checkpoint of seq 100 does not hold/);
    const missing = await verifyFile(path.join(scratch, 'absent.ndjson'));
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/^portcullis: --file: cannot read .*absent\.ndjson: ENOENT/);
    // A window after the last checkpoint: nothing ties it to the key.
    const late = await run('export', '--since', '2026-11-28T12:03:30Z', '--until', '2026-11-28T12:05:00Z');
    const lateFile = path.join(scratch, 'late.ndjson');
    await writeFile(lateFile, late.stdout);
    expect((await verifyFile(lateFile)).code).toBe(0);
    const unsigned = await verifyFile(lateFile, '--public-key', publicKeyFile);
    expect(unsigned.code).toBe(2);
    expect(unsigned.stderr).toMatch(/the export holds no signed checkpoint/);
  });

  it('starts a window in the middle of the chain, trusting its first prev_hash', async () => {
    const result = await run('export', '--since', '2026-11-28T12:01:00Z', '--until', '2026-11-28T12:02:00Z', '--format', 'csv');
    const file = path.join(scratch, 'middle.csv');
    await writeFile(file, result.stdout);
    const verified = await verifyFile(file);
    expect({ code: verified.code, stderr: verified.stderr }).toEqual({ code: 0, stderr: '' });
    expect(verified.stdout).toMatch(
      /\(csv, seq 61 to 120, head hash [0-9a-f]{64}\): the export is intact; the first record's prev_hash is trusted; the signed checkpoint of seq 100/,
    );
  });

  it('checks a head kept elsewhere with --expect, in the database and in a file', async () => {
    const hashAt = async (seq: number) =>
      (await database.db<{ seq: number; hash: string }>('decisions').where({ seq }).first('hash'))!.hash;
    const good = `120:${await hashAt(120)}`;
    const held = await run('verify', '--expect', good);
    expect({ code: held.code, stderr: held.stderr }).toEqual({ code: 0, stderr: '' });
    expect(held.stdout).toMatch(/: the chain is intact; seq 120 of chain test-instance has the expected hash\n$/);
    const { file } = await exportTo('ndjson');
    expect((await verifyFile(file, '--expect', good)).code).toBe(0);

    const wrong = await run('verify', '--expect', `120:${'a'.repeat(64)}`);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/seq 120 of chain test-instance has hash [0-9a-f]{64}, not the expected a{64}: the chain was rewritten/);
    expect((await verifyFile(file, '--expect', `120:${'a'.repeat(64)}`)).code).toBe(1);
    const malformed = await run('verify', '--expect', 'head');
    expect(malformed.code).toBe(2);
    expect(malformed.stderr).toMatch(/--expect: must be \[CHAIN:\]SEQ:HASH/);
    // Naming the chain works too.
    expect((await run('verify', '--expect', `${TEST_CHAIN}:${good}`)).code).toBe(0);
    expect((await run('verify', '--expect', `gw-other:${good}`)).code).toBe(1);

    // The newest records cut and the head moved back: the chain alone still verifies, the kept head does not.
    const kept = `220:${await hashAt(220)}`;
    await database.db.transaction(async (trx) => {
      await trx('decisions').where('seq', '>', 210).delete();
      await trx('decision_checkpoints').where('seq', '>', 100).delete();
      await trx('decision_chain_head').update({ seq: 210, hash: await hashAt(210) });
    });
    expect((await run('verify')).code).toBe(0);
    const cut = await run('verify', '--expect', kept);
    expect(cut.code).toBe(1);
    expect(cut.stderr).toMatch(/chain test-instance's head is at seq 210, behind the expected seq 220: the newest records were removed/);
  });
});
