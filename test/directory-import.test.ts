// `portcullis directory import | export | events` on a real PostgreSQL, checked through the
// running gateway and directory service: an operator bootstraps the directory without SQL, a
// second import changes nothing and says so, and export -> import round-trips.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { main } from '../src/cli/main';
import type { DirectoryEventRow } from '../src/directory-service/directory-events';
import type { DirectoryDocument } from '../src/directory-service/directory-import';
import { projectRoot } from '../src/project-root';
import { startDirectoryStack, type DirectoryStack } from './support/directory-stack';
import { createTestDatabase } from './support/test-database';
import { waitFor } from './support/wait-for';

const DIRECTORY = {
  users: [
    { subject: 'alice|sub', email: 'alice@example.com', email_verified: true, display_name: 'Alice' },
    { subject: 'bob|sub', email: 'bob@example.com', display_name: 'Bob' },
    { subject: 'carol|sub', email: 'carol@example.com' },
  ],
  organizations: [
    {
      slug: 'acme',
      name: 'Acme Corporation',
      members: [{ user: 'alice|sub', role: 'organization-admin' }, { user: 'bob|sub' }],
      roles: [{ name: 'project-creator', permissions: ['project:create'] }],
      teams: [{ name: 'builders', members: ['bob|sub'], roles: ['project-creator'] }],
      projects: [{ slug: 'api', name: 'Public API' }, { slug: 'web' }],
      credentials: [{ slug: 'deploy-key', name: 'Deploy key' }],
      invitations: [{ email: 'carol@example.com' }],
    },
    { slug: 'globex', name: 'Globex' },
  ],
};

let stack: DirectoryStack;
let dir: string;

beforeAll(async () => {
  stack = await startDirectoryStack({ seed: false });
  dir = await mkdtemp(path.join(os.tmpdir(), 'portcullis-import-'));
});

afterAll(async () => {
  await stack?.close();
  await rm(dir, { recursive: true, force: true });
});

async function portcullis(args: string[], databaseUrl = stack.database.url): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(['node', 'portcullis', ...args], {
    env: { DATABASE_URL: databaseUrl },
    out: (line) => out.push(line),
    err: (line) => err.push(line),
    cwd: dir,
  });
  return { code, out, err };
}

async function writeDocument(name: string, document: unknown): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(file, stringifyYaml(document));
  return file;
}

describe('directory import', () => {
  it('creates the whole directory, which then works through the gateway', async () => {
    const file = await writeDocument('directory.yaml', DIRECTORY);
    const run = await portcullis(['directory', 'import', file]);
    expect(run).toMatchObject({ code: 0, err: [] });
    expect(run.out).toEqual([
      expect.stringMatching(
        /3 users created; 2 organizations created; 1 roles created; 2 memberships created; 1 teams created; 1 team members created; 1 team roles created; 2 projects created; 1 credentials created; 1 invitations created$/,
      ),
    ]);

    const alice = await stack.as('alice');
    const bob = await stack.as('bob');
    const carol = await stack.as('carol');
    await waitFor(async () => (await alice.request('/orgs/acme')).status === 200, { what: 'alice to read acme' });
    expect((await carol.request('/orgs/acme')).status).toBe(403);
    // bob holds project:create through his team's role.
    const created = await bob.request('/orgs/acme/projects', { method: 'POST', json: { slug: 'docs', name: 'Docs' } });
    expect(created.status).toBe(201);
  });

  it('changes nothing the second time, and says so', async () => {
    const file = await writeDocument('directory.yaml', DIRECTORY);
    const before = await stack.database.db('directory_events').count({ n: '*' });
    const run = await portcullis(['directory', 'import', file]);
    expect(run).toEqual({ code: 0, out: [`${file}: nothing changed: the directory already holds everything in the file`], err: [] });
    expect(await stack.database.db('directory_events').count({ n: '*' })).toEqual(before);
  });

  it('updates what differs, and records each change', async () => {
    const changed = structuredClone(DIRECTORY);
    changed.organizations[0]!.name = 'Acme Inc.';
    changed.organizations[0]!.roles![0]!.permissions = ['project:create', 'project:update'];
    changed.organizations[0]!.members![1] = { user: 'bob|sub', role: 'organization-admin' };
    const run = await portcullis(['directory', 'import', await writeDocument('changed.yaml', changed)]);
    expect(run.out).toEqual([expect.stringMatching(/: 1 organizations updated; 1 roles updated; 1 memberships updated$/)]);
    const events = await stack.database
      .db<DirectoryEventRow>('directory_events')
      .where({ organization_slug: 'acme' })
      .orderBy('id', 'desc')
      .limit(3)
      .select('action', 'before', 'after');
    expect(events.map((event) => event.action).sort()).toEqual(['member.import', 'organization.import', 'role.import']);
    expect(events.find((event) => event.action === 'role.import')).toMatchObject({
      before: { permissions: ['project:create'] },
      after: { permissions: ['project:create', 'project:update'] },
    });
  });

  it('refuses a file that breaks a rule, naming where, and writes nothing of it', async () => {
    const broken = {
      users: [{ subject: 'zed|sub' }],
      organizations: [{ slug: 'zed-co', name: 'Zed', teams: [{ name: 'ops', members: ['zed|sub'] }] }],
    };
    const run = await portcullis(['directory', 'import', await writeDocument('broken.yaml', broken)]);
    expect(run.code).toBe(1);
    expect(run.err).toEqual([expect.stringMatching(/organizations\.0 \(zed-co\): team ops: zed\|sub is not a member of zed-co/)]);
    expect(await stack.database.db('users').where({ subject: 'zed|sub' })).toEqual([]);

    const invalid = await portcullis([
      'directory',
      'import',
      await writeDocument('invalid.yaml', {
        organizations: [{ slug: 'Bad Slug', name: 'x', roles: [{ name: 'r', permissions: ['Nope'] }] }],
      }),
    ]);
    expect(invalid.code).toBe(1);
    expect(invalid.err[0]).toMatch(
      /organizations\.0\.slug: must be lower-case .*organizations\.0\.roles\.0\.permissions\.0: 'Nope' is not a permission/,
    );
  });
});

describe('directory export', () => {
  it('writes the import format, and importing it into an empty database gives the same directory', async () => {
    const exported = await portcullis(['directory', 'export']);
    expect(exported.code).toBe(0);
    const document = parseYaml(exported.out.join('\n')) as Required<DirectoryDocument>;
    expect(document.organizations.map((org) => org.slug)).toEqual(['acme', 'globex']);
    expect(document.organizations[0]).toMatchObject({
      name: 'Acme Inc.',
      members: [
        { user: 'alice|sub', role: 'organization-admin' },
        { user: 'bob|sub', role: 'organization-admin' },
      ],
      teams: [{ name: 'builders', members: ['bob|sub'], roles: ['project-creator'] }],
      projects: [{ slug: 'api', name: 'Public API' }, { slug: 'docs', name: 'Docs' }, { slug: 'web' }],
      invitations: [{ email: 'carol@example.com', role: 'default' }],
    });

    const empty = await createTestDatabase();
    try {
      const file = await writeDocument('exported.yaml', document);
      const imported = await portcullis(['directory', 'import', file], empty.url);
      expect(imported.code).toBe(0);
      const again = await portcullis(['directory', 'export'], empty.url);
      expect(again.out).toEqual(exported.out);
      expect((await portcullis(['directory', 'import', file], empty.url)).out).toEqual([
        `${file}: nothing changed: the directory already holds everything in the file`,
      ]);
    } finally {
      await empty.drop();
    }
  });
});

describe('directory events', () => {
  it('prints the change record newest first, for one organization and at most --limit lines', async () => {
    const run = await portcullis(['directory', 'events', '--org', 'acme', '--limit', '2']);
    expect(run.code).toBe(0);
    expect(run.out).toHaveLength(2);
    for (const line of run.out) expect(line).toMatch(/^\d{4}-\d\d-\d\dT\S+Z {2}\S+ {2}acme {2}\S+ {2}actor=\S+ {2}request=\S+$/);
    const times = run.out.map((line) => line.split('  ')[0]!);
    expect([...times].sort().reverse()).toEqual(times);
    expect((await portcullis(['directory', 'events', '--limit', '0'])).code).toBe(2);
  });
});

describe('the import format of the README', () => {
  it('imports as documented ("### Bootstrapping the directory from a file")', async () => {
    const readme = await readFile(path.join(projectRoot, 'README.md'), 'utf8');
    const block = /^```yaml directory\n([\s\S]*?)^```$/m.exec(readme)?.[1];
    expect(block).toBeDefined();
    const file = path.join(dir, 'readme-directory.yaml');
    await writeFile(file, block!);
    const empty = await createTestDatabase();
    try {
      const run = await portcullis(['directory', 'import', file], empty.url);
      expect(run).toMatchObject({ code: 0, err: [] });
      expect(run.out[0]).toMatch(/3 users created; 2 organizations created; .*1 invitations created$/);
      expect(await empty.db('team_members').count({ n: '*' })).toEqual([{ n: '1' }]);
    } finally {
      await empty.drop();
    }
  });
});
