// PgDirectoryReader against a real PostgreSQL: for every kind of resource and caller, one
// statement answers exactly what PgSubjectLoader and PgFactsLoader answer separately.
import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import { DependencyError } from '../base/errors';
import type { Resource } from '../routes/route';
import { seedDirectory, type Directory } from '../../test/support/directory-fixtures';
import { createTestDatabase, type TestDatabase } from '../../test/support/test-database';
import { directoryVersionOf } from './directory-version';
import { PgDirectoryReader } from './pg-directory-reader';
import { PgFactsLoader } from './pg-facts-loader';
import { PgSubjectLoader } from './pg-subject-loader';

let database: TestDatabase;
let db: Knex;
let directory: Directory;
let builtinDefault: string;

beforeAll(async () => {
  database = await createTestDatabase();
  db = database.db;
  directory = await seedDirectory(db, { globexProject: true });
  const [row] = await db('roles').whereNull('organization_id').where({ name: 'default' }).select<{ id: string }[]>('id');
  builtinDefault = row!.id;
});

afterAll(() => database.drop());

const subjects = ['alice|sub', 'bob|sub', 'dave|sub', 'erin|sub', 'nobody'];
const resources: [string, Resource, string][] = [
  ['no organization', { type: 'organization' }, 'organization:list'],
  ['an organization', { org: 'acme', type: 'organization' }, 'organization:read'],
  ['an organization to delete (R5)', { org: 'acme', type: 'organization' }, 'organization:delete'],
  ['a missing organization', { org: 'initech', type: 'organization' }, 'organization:read'],
  ['a project by slug', { org: 'acme', type: 'project', project: 'api' }, 'project:read'],
  ['a project by id', { org: 'acme', type: 'project', project: 'API-ID' }, 'project:read'],
  ['a project by id under another organization (R7)', { org: 'globex', type: 'project', project: 'API-ID' }, 'project:read'],
  ['a team by name', { org: 'acme', type: 'team', team: 'deployers' }, 'team:read'],
  ['a team by a name in another case', { org: 'acme', type: 'team', team: 'builders' }, 'team:read'],
  ['a team by id', { org: 'acme', type: 'team', team: 'BUILDERS-ID' }, 'team:read'],
  ["an organization's role by name", { org: 'acme', type: 'role', role: 'project-creator' }, 'role:read'],
  ['a role by id', { org: 'acme', type: 'role', role: 'CREATOR-ID' }, 'role:read'],
  ['a built-in role by id', { org: 'globex', type: 'role', role: 'DEFAULT-ID' }, 'role:read'],
  ['a credential', { org: 'acme', type: 'credential', credential: 'Key_AbC' }, 'credential:read'],
  ["another organization's credential (R7)", { org: 'acme', type: 'credential', credential: 'globex-key' }, 'credential:read'],
  ['a credential by id', { org: 'acme', type: 'credential', credential: 'DEPLOY-ID' }, 'credential:read'],
  ['a member', { org: 'acme', type: 'member', user: 'BOB-ID' }, 'member:read'],
  ['a non-member', { org: 'acme', type: 'member', user: 'ERIN-ID' }, 'member:read'],
  ['a member by a malformed id', { org: 'acme', type: 'member', user: 'bob' }, 'member:read'],
  ['a team member', { org: 'acme', type: 'team', team: 'deployers', user: 'BOB-ID' }, 'team:member:read'],
  ['an invitation under its organization', { org: 'acme', type: 'invitation', invitation: 'INVITATION-ID' }, 'invitation:read'],
  ['an invitation alone', { type: 'invitation', invitation: 'INVITATION-ID' }, 'invitation:accept'],
  ['an invitation by a malformed id', { type: 'invitation', invitation: 'nope' }, 'invitation:accept'],
];

/** The placeholders above with the seeded ids (known only once the database is seeded). */
function resolved(resource: Resource): Resource {
  const placeholders: Record<string, string | undefined> = {
    'API-ID': directory.projects.api,
    'BUILDERS-ID': directory.teams.deployers,
    'CREATOR-ID': directory.roles.projectCreator,
    'DEFAULT-ID': builtinDefault,
    'DEPLOY-ID': directory.credentials.acmeKey,
    'BOB-ID': directory.users.bob,
    'ERIN-ID': directory.users.erin,
    'INVITATION-ID': directory.invitations.carol,
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
        'bob|sub',
        { org: 'acme', type: 'project', project: 'api' },
        'project:read',
      );
      expect(subject.memberships.acme?.teams).toEqual(['deployers']);
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
      new PgDirectoryReader(broken.db).load('bob|sub', { org: 'acme', type: 'organization' }, 'organization:read'),
    ).rejects.toBeInstanceOf(DependencyError);
  });

  it('names a statement per shape of query, the same name for the same shape', async () => {
    const names: string[] = [];
    const seen = (query: { options?: { name?: string } }) => names.push(query.options?.name ?? '');
    db.on('query', seen);
    try {
      const reader = new PgDirectoryReader(db);
      await reader.load('bob|sub', { org: 'acme', type: 'project', project: 'api' }, 'project:read');
      await reader.load('alice|sub', { org: 'globex', type: 'project', project: 'web' }, 'project:read');
      await reader.load('alice|sub', { org: 'globex', type: 'project', project: randomUUID() }, 'project:read');
    } finally {
      db.off('query', seen);
    }
    expect(names[0]).toMatch(/^portcullis_directory_[0-9a-f]{16}$/);
    expect(names[1]).toBe(names[0]);
    expect(names[2]).not.toBe(names[0]);
  });
});
