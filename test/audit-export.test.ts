// Decision records shipped in OPA's decision-log format: to a real HTTP collector on loopback
// that speaks OPA's `decision_logs` protocol (gzip'd JSON arrays), through its failures, and
// to a file.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { waitFor } from './support/audit-helpers';
import { seedDirectory, type Directory } from './support/directory-fixtures';
import { startHarness, type Harness } from './support/gateway-harness';

interface Collector {
  url: string;
  posts: { headers: http.IncomingHttpHeaders; events: Record<string, any>[] }[];
  /** Answer this many of the next POSTs with 503. */
  failNext: number;
  close(): Promise<void>;
}

async function startCollector(): Promise<Collector> {
  const collector: Collector = { url: '', posts: [], failNext: 0, close: async () => undefined };
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
      collector.posts.push({ headers: req.headers, events: JSON.parse(body.toString('utf8')) as Record<string, any>[] });
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
        export: { kind: 'http', url: `${collector.url}/logs`, headers: { authorization: 'Bearer collector-secret' }, flush_interval_ms: 50, labels: { region: 'test' } },
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
    await waitFor(async () => wanted.every((id) => events().some((event) => event.decision_id === id)), 'the events to reach the collector');

    const post = collector.posts[0]!;
    expect(post.headers['content-encoding']).toBe('gzip');
    expect(post.headers['content-type']).toBe('application/json');
    expect(post.headers.authorization).toBe('Bearer collector-secret');
    expect(post.headers['x-portcullis-decision']).toBeUndefined();

    const byId = new Map(events().map((event) => [event.decision_id, event]));
    const revision = (await h.database.db('decisions').where({ id: idOf(allowed) }).first('policy_revision')).policy_revision;
    expect(byId.get(idOf(conflict))).toEqual({
      decision_id: idOf(conflict),
      path: 'portcullis/decision',
      input: expect.objectContaining({ action: 'organization:delete', resource: { type: 'organization', org: 'acme' } }),
      result: { allow: false, status: 409, reasons: [expect.stringContaining("still has 2 projects")] },
      timestamp: expect.stringMatching(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/),
      bundles: { portcullis: { revision } },
      labels: { id: expect.stringMatching(/^[0-9a-f-]{36}$/), app: 'portcullis', version: expect.any(String), region: 'test' },
      metrics: { timer_rego_query_eval_ns: expect.any(Number) },
    });
    expect(byId.get(idOf(allowed))).toMatchObject({ result: { allow: true, status: 200 }, input: { subject: { id: dir.users.alice, sub: 'alice|sub' } } });
    // Masked values are not exported either.
    expect(byId.get(idOf(allowed))!.input.subject.email).toBeUndefined();
    // A request refused before the policy was asked has no input.
    expect(byId.get(idOf(anonymous))).toMatchObject({ result: { allow: false, status: 401 } });
    expect('input' in byId.get(idOf(anonymous))!).toBe(false);
    expect(JSON.stringify(events())).not.toContain(alice);
  });

  it('retries while the collector fails, and delivers every event', async () => {
    collector.failNext = 3;
    const sent: string[] = [];
    for (let n = 0; n < 5; n++) {
      const res = await h.request('/orgs/acme', { token: alice });
      await res.arrayBuffer();
      sent.push(res.headers.get('x-portcullis-decision')!);
    }
    await waitFor(async () => sent.every((id) => events().some((event) => event.decision_id === id)), 'the events to arrive after the failures');
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
      const lines = await waitFor(async () => {
        const text = await readFile(file, 'utf8').catch(() => '');
        const parsed = text.split('\n').filter(Boolean).map((line) => JSON.parse(line) as { decision_id: string; path: string });
        return parsed.length >= 2 && parsed;
      }, 'the file to be written');
      expect(lines.map((line) => line.decision_id)).toEqual(ids);
      expect(lines.every((line) => line.path === 'portcullis/decision')).toBe(true);
    } finally {
      await h.close();
    }
  });
});
