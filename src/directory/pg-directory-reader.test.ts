// PgDirectoryReader against a real PostgreSQL: for every kind of resource and caller, one
// statement answers exactly what PgSubjectLoader and PgFactsLoader answer separately.
import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import { DependencyError } from '../base/errors';
import { seedDemoData } from '../demo/demo-data';
import type { Resource } from '../routes/route';
import { createTestDatabase, type TestDatabase } from '../../test/support/test-database';
import { directoryVersionOf } from './directory-version';
import { PgDirectoryReader } from './pg-directory-reader';
import { PgFactsLoader } from './pg-facts-loader';
import { PgSubjectLoader } from './pg-subject-loader';

let database: TestDatabase;
let db: Knex;
const ids: Record<string, string> = {};

async function idOf(sql: string, ...bindings: string[]): Promise<string> {
  const { rows } = await db.raw<{ rows: { id: string }[] }>(sql, bindings);
  if (!rows[0]) throw new Error(`no row for ${sql}`);
  return rows[0].id;
}

beforeAll(async () => {
  database = await createTestDatabase();
  db = database.db;
  await seedDemoData(db);
  ids.api = await idOf(
    `select p.id from projects p join organizations o on o.id = p.organization_id where o.slug = 'acme' and p.slug = 'api'`,
  );
  ids.builders = await idOf(`select id from teams where name = 'builders'`);
  ids.creator = await idOf(`select id from roles where name = 'project-creator'`);
  ids.builtinDefault = await idOf(`select id from roles where name = 'default' and organization_id is null`);
  ids.deployKey = await idOf(`select id from credentials where slug = 'deploy-key'`);
  ids.bob = await idOf(`select id from users where subject = 'demo|bob'`);
  ids.dave = await idOf(`select id from users where subject = 'demo|dave'`);
  const acme = await idOf(`select id from organizations where slug = 'acme'`);
  ids.invitation = await idOf(`insert into invitations (organization_id, email) values (?, 'Carol@Example.COM') returning id`, acme);
});

afterAll(() => database.drop());

const subjects = ['demo|alice', 'demo|bob', 'demo|dave', 'nobody'];
const resources: [string, Resource, string][] = [
  ['no organization', { type: 'organization' }, 'organization:list'],
  ['an organization', { org: 'acme', type: 'organization' }, 'organization:read'],
  ['an organization to delete (R5)', { org: 'acme', type: 'organization' }, 'organization:delete'],
  ['a missing organization', { org: 'initech', type: 'organization' }, 'organization:read'],
  ['a project by slug', { org: 'acme', type: 'project', project: 'api' }, 'project:read'],
  ['a project by id', { org: 'acme', type: 'project', project: 'API-ID' }, 'project:read'],
  ['a project by id under another organization (R7)', { org: 'globex', type: 'project', project: 'API-ID' }, 'project:read'],
  ['a team by name', { org: 'acme', type: 'team', team: 'builders' }, 'team:read'],
  ['a team by id', { org: 'acme', type: 'team', team: 'BUILDERS-ID' }, 'team:read'],
  ["an organization's role by name", { org: 'acme', type: 'role', role: 'project-creator' }, 'role:read'],
  ['a role by id', { org: 'acme', type: 'role', role: 'CREATOR-ID' }, 'role:read'],
  ['a built-in role by id', { org: 'globex', type: 'role', role: 'DEFAULT-ID' }, 'role:read'],
  ['a credential', { org: 'acme', type: 'credential', credential: 'deploy-key' }, 'credential:read'],
  ['a credential by id', { org: 'acme', type: 'credential', credential: 'DEPLOY-ID' }, 'credential:read'],
  ['a member', { org: 'acme', type: 'member', user: 'BOB-ID' }, 'member:read'],
  ['a non-member', { org: 'acme', type: 'member', user: 'DAVE-ID' }, 'member:read'],
  ['a member by a malformed id', { org: 'acme', type: 'member', user: 'bob' }, 'member:read'],
  ['a team member', { org: 'acme', type: 'team', team: 'builders', user: 'BOB-ID' }, 'team:member:read'],
  ['an invitation under its organization', { org: 'acme', type: 'invitation', invitation: 'INVITATION-ID' }, 'invitation:read'],
  ['an invitation alone', { type: 'invitation', invitation: 'INVITATION-ID' }, 'invitation:accept'],
  ['an invitation by a malformed id', { type: 'invitation', invitation: 'nope' }, 'invitation:accept'],
];

/** The placeholders above with the seeded ids (known only once the database is seeded). */
function resolved(resource: Resource): Resource {
  const placeholders: Record<string, string | undefined> = {
    'API-ID': ids.api,
    'BUILDERS-ID': ids.builders,
    'CREATOR-ID': ids.creator,
    'DEFAULT-ID': ids.builtinDefault,
    'DEPLOY-ID': ids.deployKey,
    'BOB-ID': ids.bob,
    'DAVE-ID': ids.dave,
    'INVITATION-ID': ids.invitation,
  };
  return Object.fromEntries(Object.entries(resource).map(([key, value]) => [key, placeholders[value as string] ?? value])) as Resource;
}

describe('PgDirectoryReader', () => {
  it.each(resources)(
    'answers %s for every caller exactly as the two loaders do, at the same directory version',
    async (_, given, action) => {
      const reader = new PgDirectoryReader(db);
      const resource = resolved(given);
      for (const sub of subjects) {
        const together = await reader.load(sub, resource, action);
        const subject = await new PgSubjectLoader(db).load(sub);
        const facts = await new PgFactsLoader(db).load(resource, action);
        expect(together.subject).toEqual(subject);
        expect(together.facts).toEqual(facts);
        expect(directoryVersionOf(together.subject, together.facts)).toBe(directoryVersionOf(subject, facts));
      }
    },
  );

  it('reads a caller with memberships and the facts in one statement', async () => {
    const statements: string[] = [];
    const count = (query: { sql: string }) => statements.push(query.sql);
    db.on('query', count);
    try {
      const { subject, facts } = await new PgDirectoryReader(db).load(
        'demo|bob',
        { org: 'acme', type: 'project', project: 'api' },
        'project:read',
      );
      expect(subject.memberships.acme?.teams).toEqual(['builders']);
      expect(facts).toEqual({ organization: { exists: true }, project: { exists: true, in_organization: true } });
    } finally {
      db.off('query', count);
    }
    expect(statements).toHaveLength(1);
  });

  it('fails as a dependency error when PostgreSQL cannot answer', async () => {
    const broken = await createTestDatabase();
    await broken.drop();
    await expect(
      new PgDirectoryReader(broken.db).load('demo|bob', { org: 'acme', type: 'organization' }, 'organization:read'),
    ).rejects.toBeInstanceOf(DependencyError);
  });

  it('names a statement per shape of query, the same name for the same shape', async () => {
    const names: string[] = [];
    const seen = (query: { options?: { name?: string } }) => names.push(query.options?.name ?? '');
    db.on('query', seen);
    try {
      const reader = new PgDirectoryReader(db);
      await reader.load('demo|bob', { org: 'acme', type: 'project', project: 'api' }, 'project:read');
      await reader.load('demo|alice', { org: 'globex', type: 'project', project: 'web' }, 'project:read');
      await reader.load('demo|alice', { org: 'globex', type: 'project', project: randomUUID() }, 'project:read');
    } finally {
      db.off('query', seen);
    }
    expect(names[0]).toMatch(/^portcullis_directory_[0-9a-f]{16}$/);
    expect(names[1]).toBe(names[0]);
    expect(names[2]).not.toBe(names[0]);
  });
});
