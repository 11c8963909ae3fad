// The directory caches against a real PostgreSQL: the triggers' notifications name exactly
// who and what changed, the change listener evicts exactly those entries, warm caches ask
// the database nothing, and a steady stream of unrelated writes costs no hits. (Two whole
// gateways on one database: cache-freshness.test.ts; a silently dead listener: cache-heartbeat.)
import type { Knex } from 'knex';
import pg from 'pg';
import pino from 'pino';
import { CachedFactsLoader } from '../src/directory/cached-facts-loader';
import { CachedSubjectLoader } from '../src/directory/cached-subject-loader';
import { DIRECTORY_CHANNEL, DirectoryChangeListener } from '../src/directory/change-listener';
import { parseDirectoryChange, type DirectoryChange } from '../src/directory/directory-cache';
import { RequestJudge } from '../src/authz/request-judge';
import { PgDirectoryReader } from '../src/directory/pg-directory-reader';
import { PgFactsLoader } from '../src/directory/pg-facts-loader';
import { PgSubjectLoader } from '../src/directory/pg-subject-loader';
import { seedDirectory, type Directory } from './support/directory-fixtures';
import type { Inserted, MembershipRow } from './support/rows';
import { createTestDatabase, type TestDatabase } from './support/test-database';
import { waitFor } from './support/wait-for';

let database: TestDatabase;
let db: Knex;
let dir: Directory;
let listener: DirectoryChangeListener;
let subjects: CachedSubjectLoader;
let facts: CachedFactsLoader;
let watcher: pg.Client;
const heard: DirectoryChange[] = [];
const payloads: string[] = [];

beforeAll(async () => {
  database = await createTestDatabase();
  db = database.db;
  dir = await seedDirectory(db, { globexProject: true });
  listener = new DirectoryChangeListener({ url: database.url, logger: pino({ level: 'silent' }) });
  subjects = new CachedSubjectLoader(new PgSubjectLoader(db), listener, { maxEntries: 100, ttlMs: 60_000 });
  facts = new CachedFactsLoader(new PgFactsLoader(db), listener, { maxEntries: 100, ttlMs: 60_000 });
  listener.subscribe(subjects);
  listener.subscribe(facts);
  await listener.start();
  watcher = new pg.Client({ connectionString: database.url });
  await watcher.connect();
  watcher.on('notification', (message) => {
    payloads.push(message.payload ?? '');
    heard.push(parseDirectoryChange(message.payload ?? ''));
  });
  await watcher.query(`LISTEN ${DIRECTORY_CHANNEL}`);
});

afterAll(async () => {
  await listener?.close();
  await watcher?.end();
  await database?.drop();
});

/** Runs `write` and returns the notifications it caused (after the listener has them too). */
async function changesOf(write: () => Promise<unknown>): Promise<DirectoryChange[]> {
  const before = heard.length;
  const seenBefore = listener.stats().notifications;
  await write();
  const deadline = Date.now() + 2000;
  while (Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    if (heard.length > before && listener.stats().notifications - seenBefore === heard.length - before) break;
  }
  return heard.slice(before);
}

function queriesDuring<T>(work: () => Promise<T>): Promise<{ result: T; queries: string[] }> {
  const queries: string[] = [];
  const onQuery = (query: { sql: string }) => queries.push(query.sql);
  db.on('query', onQuery);
  return work().then(
    (result) => {
      db.off('query', onQuery);
      return { result, queries };
    },
    (error: unknown) => {
      db.off('query', onQuery);
      throw error;
    },
  );
}

/** A judge over empty caches (subscribed to the listener) and the reader of both, with a policy that allows everything. */
function coldJudge(): { judge: RequestJudge; coldSubjects: CachedSubjectLoader; coldFacts: CachedFactsLoader } {
  const options = { maxEntries: 100, ttlMs: 60_000 };
  const coldSubjects = new CachedSubjectLoader(new PgSubjectLoader(db), listener, options);
  const coldFacts = new CachedFactsLoader(new PgFactsLoader(db), listener, options);
  listener.subscribe(coldSubjects);
  listener.subscribe(coldFacts);
  const judge = new RequestJudge({
    subjects: coldSubjects,
    facts: coldFacts,
    directoryReader: new PgDirectoryReader(db),
    policy: {
      current: {
        revision: 'r1',
        evaluate: () => ({ decision: { allow: true, status: 200, reasons: [] }, revision: 'r1', latencyUs: 1 }),
      },
    },
  });
  return { judge, coldSubjects, coldFacts };
}

const project = (org: string, id: string) => ({ type: 'project', org, project: id });

describe('the directory triggers', () => {
  it('name the members of a team whose roles change', async () => {
    const [change] = await changesOf(() =>
      db('team_roles')
        .where({ team_id: dir.teams.deployers, role_id: dir.roles.projectCreator })
        .update({ role_id: dir.roles.projectCreator }),
    );
    expect(change).toMatchObject({ table: 'team_roles', op: 'UPDATE' });
    expect(change!.subjects).toEqual({ all: false, users: [dir.users.bob], subs: [], orgs: [] });
    expect(change!.facts).toEqual({ all: false, orgs: [], ids: [] });
  });

  it('name everyone holding a role directly or through a team when the role changes', async () => {
    const [change] = await changesOf(() =>
      db('roles')
        .where({ id: dir.roles.projectCreator })
        .update({ permissions: ['project:create', 'pipeline:read'] }),
    );
    expect(change!.subjects.users).toEqual([dir.users.bob]);
    expect(change!.facts).toEqual({ all: false, orgs: ['acme'], ids: [dir.roles.projectCreator] });
  });

  it('name both the old and the new subject when a user row changes', async () => {
    const [change] = await changesOf(() => db('users').where({ id: dir.users.erin }).update({ subject: 'erin|new' }));
    expect(change!.subjects.subs.sort()).toEqual(['erin|new', 'erin|sub']);
    expect(change!.subjects.users).toEqual([dir.users.erin]);
    await changesOf(() => db('users').where({ id: dir.users.erin }).update({ subject: 'erin|sub' }));
  });

  it('name the organization, for its members and its facts, when it is renamed', async () => {
    const [change] = await changesOf(() => db('organizations').where({ id: dir.orgs.globex }).update({ slug: 'globex2' }));
    expect(change!.subjects.orgs.sort()).toEqual(['globex', 'globex2']);
    expect(change!.facts.orgs.sort()).toEqual(['globex', 'globex2']);
    await changesOf(() => db('organizations').where({ id: dir.orgs.globex }).update({ slug: 'globex' }));
  });

  it('name the project and its organization when a project changes', async () => {
    const [change] = await changesOf(() => db('projects').where({ id: dir.projects.web }).update({ name: 'Web' }));
    expect(change!.facts).toEqual({ all: false, orgs: ['acme'], ids: [dir.projects.web] });
    expect(change!.subjects).toEqual({ all: false, users: [], subs: [], orgs: [] });
  });

  it('send one notification for a bulk write, asking for everything to be dropped when it is too large to list', async () => {
    const rows = Array.from({ length: 150 }, (_, i) => ({ subject: `bulk-${i}`, email: `bulk-${i}@example.com` }));
    const changes = await changesOf(() => db('users').insert(rows));
    expect(changes).toHaveLength(1);
    expect(changes[0]!.subjects.all).toBe(true);
    expect(payloads[payloads.length - 1]!.length).toBeLessThan(8000);
    await changesOf(() => db('users').where('subject', 'like', 'bulk-%').delete());
  });

  it("keep every payload under PostgreSQL's 8000-byte limit, even with long subjects", async () => {
    const rows = Array.from({ length: 20 }, (_, i) => ({ subject: `${'x'.repeat(600)}-${i}` }));
    const [change] = await changesOf(() => db('users').insert(rows));
    expect(Buffer.byteLength(payloads[payloads.length - 1]!)).toBeLessThan(8000);
    expect(change!.subjects.all).toBe(true);
    await changesOf(() => db('users').where('subject', 'like', 'xxxx%').delete());
  });

  it('stay silent for an update that changes no row', async () => {
    const changes = await changesOf(async () => {
      await db('teams').where({ name: 'no-such-team' }).update({ name: 'x' });
      await db('invitations').where({ id: dir.invitations.carol }).update({ email: 'carol@example.com' });
    });
    expect(changes.map((change) => change.table)).toEqual(['invitations']);
    expect(changes[0]!.facts).toEqual({ all: false, orgs: [], ids: [dir.invitations.carol] });
  });
});

describe('the cached loaders', () => {
  it('answer warm requests without a single query', async () => {
    await subjects.load('alice|sub');
    await facts.load(project('acme', 'api'), 'project:read');
    const { result, queries } = await queriesDuring(() =>
      Promise.all([subjects.load('alice|sub'), facts.load(project('acme', 'api'), 'project:read')]),
    );
    expect(queries).toEqual([]);
    expect(result[0].memberships.acme?.role).toBe('organization-admin');
    expect(result[1].project).toEqual({ exists: true, in_organization: true });
  });

  it('fill both caches from one statement when a request has neither cached, then answer it without a query', async () => {
    const { judge, coldSubjects, coldFacts } = coldJudge();
    const resource = project('acme', 'api');
    const request = {
      requestId: 'req-1',
      decisionId: 'dec-1',
      method: 'GET',
      path: '/orgs/acme/projects/api',
      match: {
        route: '/orgs/{org}/projects/{project}',
        path: '/orgs/acme/projects/api',
        action: 'project:read',
        service: 'projects',
        params: { org: 'acme', project: 'api' },
        resource,
        checkedByUpstream: [],
      },
      sub: 'bob|sub',
    };

    const cold = await queriesDuring(() => judge.judge(request));
    expect(cold.queries).toHaveLength(1);
    expect(cold.result.input.subject).toEqual(await new PgSubjectLoader(db).load('bob|sub'));
    expect(cold.result.input.facts).toEqual(await new PgFactsLoader(db).load(resource, 'project:read'));
    expect(cold.result.directoryVersion).not.toBeNull();
    expect(coldSubjects.cacheStats()).toMatchObject({ misses: 1, size: 1 });
    expect(coldFacts.cacheStats()).toMatchObject({ misses: 1, size: 1 });

    const warm = await queriesDuring(() => judge.judge(request));
    expect(warm.queries).toEqual([]);
    expect(warm.result.input.subject).toEqual(cold.result.input.subject);

    // Only the facts missing: the facts loader's own statement, not the read of both.
    const other = { ...request, match: { ...request.match, resource: project('acme', 'web'), params: { org: 'acme', project: 'web' } } };
    const half = await queriesDuring(() => judge.judge(other));
    expect(half.queries).toHaveLength(1);
    expect(half.queries[0]).not.toMatch(/subject_user/);
  });

  it("read a caller once for their concurrent cold requests: the others' facts alone, with the facts loader's statement", async () => {
    const { judge, coldSubjects, coldFacts } = coldJudge();
    const requestFor = (id: string) => ({
      requestId: `req-${id}`,
      decisionId: `dec-${id}`,
      method: 'GET',
      path: `/orgs/acme/projects/${id}`,
      match: {
        route: '/orgs/{org}/projects/{project}',
        path: `/orgs/acme/projects/${id}`,
        action: 'project:read',
        service: 'projects',
        params: { org: 'acme', project: id },
        resource: project('acme', id),
        checkedByUpstream: [],
      },
      sub: 'bob|sub',
    });

    const cold = await queriesDuring(() => Promise.all(['api', 'web', 'missing'].map((id) => judge.judge(requestFor(id)))));
    // One statement reads the caller with the first request's facts; the others read their facts only.
    expect(cold.queries).toHaveLength(3);
    expect(cold.queries.filter((sql) => /subject_user/.test(sql))).toHaveLength(1);
    const subject = await new PgSubjectLoader(db).load('bob|sub');
    for (const [i, id] of ['api', 'web', 'missing'].entries()) {
      expect(cold.result[i]!.input.subject).toEqual(subject);
      expect(cold.result[i]!.input.facts).toEqual(await new PgFactsLoader(db).load(project('acme', id), 'project:read'));
    }
    expect(coldSubjects.cacheStats()).toMatchObject({ size: 1 });
    expect(coldFacts.cacheStats()).toMatchObject({ size: 3 });
  });

  it('hand out warm entries at once through cached(), a frozen resource keyed as its unfrozen twin and per action', async () => {
    const resource = project('acme', 'api');
    const frozen = Object.freeze({ ...resource });
    await subjects.load('alice|sub');
    await facts.load(resource, 'project:read');
    const { result, queries } = await queriesDuring(() =>
      Promise.resolve([
        subjects.cached('alice|sub'),
        facts.cached(frozen, 'project:read'),
        facts.cached(frozen, 'project:delete'),
      ] as const),
    );
    expect(queries).toEqual([]);
    expect(result[0]?.memberships.acme?.role).toBe('organization-admin');
    expect(result[1]?.project).toEqual({ exists: true, in_organization: true });
    expect(result[2]).toBeUndefined();
    expect(subjects.cached('nobody|sub')).toBeUndefined();
  });

  it('evict exactly the members of a team whose role changed, and nobody else', async () => {
    await Promise.all(['alice|sub', 'bob|sub', 'dave|sub'].map((sub) => subjects.load(sub)));
    const reader = (await db('roles')
      .insert({ organization_id: dir.orgs.acme, name: 'pipeline-reader', permissions: ['pipeline:read'] })
      .returning('id')) as Inserted;
    await changesOf(() => db('team_roles').insert({ team_id: dir.teams.deployers, role_id: reader[0].id }));
    const { result, queries } = await queriesDuring(() =>
      Promise.all(['alice|sub', 'bob|sub', 'dave|sub'].map((sub) => subjects.load(sub))),
    );
    expect(queries).toHaveLength(1); // bob's
    expect(result[1]!.memberships.acme?.roles).toContain('pipeline-reader');
  });

  it("evict the facts of an organization whose projects change, keeping other organizations' facts", async () => {
    await facts.load(project('acme', 'mobile'), 'project:read');
    await facts.load(project('globex', 'secret'), 'project:read');
    expect((await facts.load(project('acme', 'mobile'), 'project:read')).project).toEqual({ exists: false, in_organization: false });
    await changesOf(() => db('projects').insert({ organization_id: dir.orgs.acme, slug: 'mobile' }));
    const { result, queries } = await queriesDuring(() =>
      Promise.all([facts.load(project('acme', 'mobile'), 'project:read'), facts.load(project('globex', 'secret'), 'project:read')]),
    );
    expect(queries).toHaveLength(1);
    expect(result[0].project).toEqual({ exists: true, in_organization: true });
  });

  it('evict a project addressed by id under another organization when the project is deleted', async () => {
    const secret = dir.projects.globexSecret!;
    expect((await facts.load(project('acme', secret), 'project:read')).project).toEqual({ exists: true, in_organization: false });
    await changesOf(() => db('projects').where({ id: secret }).delete());
    expect((await facts.load(project('acme', secret), 'project:read')).project).toEqual({ exists: false, in_organization: false });
  });

  it('count hits and misses and stay within their bound', async () => {
    const small = new CachedSubjectLoader(new PgSubjectLoader(db), listener, { maxEntries: 2, ttlMs: 60_000 });
    for (const sub of ['alice|sub', 'bob|sub', 'dave|sub', 'dave|sub']) await small.load(sub);
    expect(small.cacheStats()).toEqual({ hits: 1, misses: 3, size: 2 });
  });
});

describe('under a steady stream of unrelated directory writes', () => {
  const pgSubjects = () => new PgSubjectLoader(db);
  const options = { maxEntries: 100, ttlMs: 60_000 };
  const changes: DirectoryChange[] = [];
  let writing = true;
  let writer: Promise<void>;

  beforeAll(() => {
    // The real listener's notifications as the caches get them (a cache that only records).
    listener.subscribe({ evict: (change) => changes.push(change), clear: () => undefined });
    // Another service keeps updating a user none of the callers below is.
    writer = (async () => {
      for (let n = 0; writing; n += 1) {
        await db('users')
          .where({ id: dir.users.erin })
          .update({ display_name: `erin ${n}` });
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    })();
  });

  afterAll(async () => {
    writing = false;
    await writer;
  });

  it('keeps the subject hit rate: a read during which only others changed is cached', async () => {
    // Each directory read is still in flight when the next notification arrives, as every read
    // is when writes come often enough: the worst case, made certain.
    const overlapping = pgSubjects();
    const subjectsUnderWrites = new CachedSubjectLoader(
      {
        async load(sub) {
          const heardBefore = changes.length;
          const subject = await overlapping.load(sub);
          await waitFor(() => changes.length > heardBefore, { what: 'a notification during the read' });
          return subject;
        },
      },
      listener,
      options,
    );
    listener.subscribe(subjectsUnderWrites);
    for (let round = 0; round < 10; round += 1) {
      for (const sub of ['alice|sub', 'bob|sub', 'dave|sub']) await subjectsUnderWrites.load(sub);
    }
    expect(subjectsUnderWrites.cacheStats()).toEqual({ hits: 27, misses: 3, size: 3 });
  });

  it("does not cache a read during which the caller's own subject changed, and enforces the change within 1 s", async () => {
    const gated = pgSubjects();
    let readDone!: () => void;
    let release!: () => void;
    const read = new Promise<void>((resolve) => (readDone = resolve));
    const released = new Promise<void>((resolve) => (release = resolve));
    let reads = 0;
    const subjectsUnderWrites = new CachedSubjectLoader(
      {
        async load(sub) {
          const subject = await gated.load(sub);
          reads += 1;
          readDone();
          await released;
          return subject;
        },
      },
      listener,
      options,
    );
    listener.subscribe(subjectsUnderWrites);

    const pending = subjectsUnderWrites.load('bob|sub');
    await read;
    const membership = await db('organization_members')
      .where({ organization_id: dir.orgs.acme, user_id: dir.users.bob })
      .first<MembershipRow>();
    const heardBefore = changes.length;
    await db('organization_members').where({ organization_id: dir.orgs.acme, user_id: dir.users.bob }).delete();
    try {
      // Only the read's result says bob is in acme: the cache learns that tag at fill time.
      await waitFor(
        () =>
          changes
            .slice(heardBefore)
            .some((change) => change.table === 'organization_members' && change.subjects.users.includes(dir.users.bob)),
        {
          timeoutMs: 1000,
          what: 'the notification of bob leaving acme',
        },
      );
      release();
      expect(Object.keys((await pending).memberships)).toContain('acme'); // answered as read
      expect(subjectsUnderWrites.cacheStats().size).toBe(0); // but not cached
      expect(Object.keys((await subjectsUnderWrites.load('bob|sub')).memberships)).not.toContain('acme');
      expect(reads).toBe(2);
    } finally {
      release();
      await db('organization_members').insert(membership);
    }
    const started = Date.now();
    await waitFor(async () => Object.keys((await subjectsUnderWrites.load('bob|sub')).memberships).includes('acme'), {
      timeoutMs: 1000,
      what: 'bob back in acme',
    });
    expect(Date.now() - started).toBeLessThan(1000);
  });
});
