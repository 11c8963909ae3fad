// PgFactsLoader against a real PostgreSQL: the facts behind R5 (projects left), R7 (resources
// addressed under the wrong organization), invitations, and malformed identifiers.
import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import { DependencyError } from '../base/errors';
import { DIRECTORY_CHECKED_PARAMETERS, type Resource } from '../routes/route';
import type { Inserted } from '../../test/support/rows';
import { createTestDatabase, type TestDatabase } from '../../test/support/test-database';
import { PgFactsLoader } from './pg-facts-loader';

let database: TestDatabase;
let db: Knex;
let loader: PgFactsLoader;

interface Org {
  id: string;
  slug: string;
}

let acme: Org;
let globex: Org;
let acmeProjects: Record<string, string>;
let globexApi: string;
let acmeOps: string;
let globexOps: string;
let acmeDeployer: string;
let globexDeployer: string;
let builtinDefault: string;
let acmeMember: string;
let globexMember: string;

async function organization(slug: string): Promise<Org> {
  const [row] = (await db('organizations').insert({ slug, name: slug }).returning(['id', 'slug'])) as Inserted<Org>;
  return row;
}
async function insertId(table: string, row: Record<string, unknown>): Promise<string> {
  const [inserted] = (await db(table).insert(row).returning('id')) as Inserted;
  return inserted.id;
}

beforeAll(async () => {
  database = await createTestDatabase();
  db = database.db;
  loader = new PgFactsLoader(db);

  acme = await organization('acme');
  globex = await organization('globex');
  await organization('empty');
  acmeProjects = {};
  // `_zeta` sorts first only by byte order (collate "C"), not in a locale's order.
  for (const slug of ['web', 'api', '_zeta', 'billing', 'cli', 'docs', 'admin']) {
    acmeProjects[slug] = await insertId('projects', { organization_id: acme.id, slug });
  }
  globexApi = await insertId('projects', { organization_id: globex.id, slug: 'api' });
  await insertId('projects', { organization_id: globex.id, slug: 'globex-only' });

  acmeOps = await insertId('teams', { organization_id: acme.id, name: 'ops' });
  globexOps = await insertId('teams', { organization_id: globex.id, name: 'ops' });
  await insertId('teams', { organization_id: globex.id, name: 'globex-team' });

  acmeDeployer = await insertId('roles', { organization_id: acme.id, name: 'deployer', permissions: ['pipeline:run'] });
  globexDeployer = await insertId('roles', { organization_id: globex.id, name: 'deployer', permissions: ['pipeline:run'] });
  await insertId('roles', { organization_id: globex.id, name: 'globex-role', permissions: [] });
  builtinDefault = (await db('roles').whereNull('organization_id').where({ name: 'default' }).first<{ id: string }>('id')).id;

  acmeMember = await insertId('users', { subject: 'acme-member' });
  globexMember = await insertId('users', { subject: 'globex-member' });
  await db('organization_members').insert({ organization_id: acme.id, user_id: acmeMember, role_id: builtinDefault });
  await db('organization_members').insert({ organization_id: globex.id, user_id: globexMember, role_id: builtinDefault });
});

afterAll(async () => {
  await database.drop();
});

const load = (resource: Resource, action = `${resource.type}:read`) => loader.load(resource, action);

describe('PgFactsLoader: organization', () => {
  it('says whether the addressed organization exists', async () => {
    expect(await load({ type: 'organization', org: 'acme' })).toEqual({ organization: { exists: true } });
    expect(await load({ type: 'organization', org: 'initech' })).toEqual({ organization: { exists: false } });
  });

  it('counts the projects left and names the first five for organization:delete (R5)', async () => {
    expect(await load({ type: 'organization', org: 'acme' }, 'organization:delete')).toEqual({
      organization: { exists: true, project_count: 7, project_slugs: ['_zeta', 'admin', 'api', 'billing', 'cli'] },
    });
  });

  it('reports no projects for an organization that has none (R5)', async () => {
    expect(await load({ type: 'organization', org: 'empty' }, 'organization:delete')).toEqual({
      organization: { exists: true, project_count: 0, project_slugs: [] },
    });
    expect(await load({ type: 'organization', org: 'initech' }, 'organization:delete')).toEqual({
      organization: { exists: false, project_count: 0, project_slugs: [] },
    });
  });

  it('loads no facts for resources without an organization', async () => {
    expect(await load({ type: 'organization' }, 'organization:create')).toEqual({});
    expect(await load({ type: 'profile', user: 'me' }, 'profile:read')).toEqual({});
    expect(await load({ type: 'profile', user: acmeMember }, 'profile:update')).toEqual({});
  });

  it('loads only the organization for a collection', async () => {
    expect(await load({ type: 'credential', org: 'acme' })).toEqual({ organization: { exists: true } });
  });

  it('finds no organization by a slug in another case (slugs are lower-case)', async () => {
    expect(await load({ type: 'organization', org: 'ACME' })).toEqual({ organization: { exists: false } });
  });
});

describe('PgFactsLoader: credentials (R7)', () => {
  let acmeKey: string;
  let globexKey: string;

  beforeAll(async () => {
    acmeKey = await insertId('credentials', { organization_id: acme.id, slug: 'Key_AbC', name: 'Deploy key' });
    globexKey = await insertId('credentials', { organization_id: globex.id, slug: 'globex-key' });
  });

  it('finds a credential by its exact slug or by id within the organization', async () => {
    expect(await load({ type: 'credential', org: 'acme', credential: 'Key_AbC' })).toEqual({
      organization: { exists: true },
      credential: { exists: true, in_organization: true },
    });
    expect((await load({ type: 'credential', org: 'acme', credential: acmeKey })).credential).toEqual({
      exists: true,
      in_organization: true,
    });
  });

  it('does not find a credential by a slug in another case', async () => {
    expect((await load({ type: 'credential', org: 'acme', credential: 'key_abc' })).credential).toEqual({
      exists: false,
      in_organization: false,
    });
  });

  it("does not let another organization's credential be addressed, by slug or by id", async () => {
    expect((await load({ type: 'credential', org: 'acme', credential: 'globex-key' })).credential).toEqual({
      exists: false,
      in_organization: false,
    });
    expect((await load({ type: 'credential', org: 'acme', credential: globexKey })).credential).toEqual({
      exists: true,
      in_organization: false,
    });
  });

  it('reports an unknown credential as missing', async () => {
    expect((await load({ type: 'credential', org: 'acme', credential: randomUUID() })).credential).toEqual({
      exists: false,
      in_organization: false,
    });
  });
});

describe('PgFactsLoader: projects (R7)', () => {
  it('finds a project by slug within the addressed organization', async () => {
    expect(await load({ type: 'project', org: 'acme', project: 'web' })).toEqual({
      organization: { exists: true },
      project: { exists: true, in_organization: true },
    });
  });

  it("does not find another organization's project by slug", async () => {
    expect((await load({ type: 'project', org: 'acme', project: 'globex-only' })).project).toEqual({
      exists: false,
      in_organization: false,
    });
  });

  it('finds a project by id and says it is in the organization', async () => {
    expect((await load({ type: 'project', org: 'acme', project: acmeProjects.web! })).project).toEqual({
      exists: true,
      in_organization: true,
    });
  });

  it("finds another organization's project by id but says it is not in the addressed one", async () => {
    expect((await load({ type: 'project', org: 'acme', project: globexApi })).project).toEqual({ exists: true, in_organization: false });
    expect((await load({ type: 'pipeline', org: 'acme', project: globexApi }, 'pipeline:run')).project).toEqual({
      exists: true,
      in_organization: false,
    });
  });

  it('accepts an upper-case id', async () => {
    expect((await load({ type: 'project', org: 'acme', project: acmeProjects.web!.toUpperCase() })).project).toEqual({
      exists: true,
      in_organization: true,
    });
  });

  it('reports an unknown project id as missing', async () => {
    expect((await load({ type: 'project', org: 'acme', project: randomUUID() })).project).toEqual({
      exists: false,
      in_organization: false,
    });
  });

  it('reports a project of an organization that does not exist as missing', async () => {
    expect(await load({ type: 'project', org: 'initech', project: 'web' })).toEqual({
      organization: { exists: false },
      project: { exists: false, in_organization: false },
    });
  });
});

describe('PgFactsLoader: teams', () => {
  it('finds a team by name or id within the organization', async () => {
    expect((await load({ type: 'team', org: 'acme', team: 'ops' })).team).toEqual({ exists: true, in_organization: true });
    expect((await load({ type: 'team', org: 'acme', team: acmeOps })).team).toEqual({ exists: true, in_organization: true });
  });

  it('finds a team by its exact, decoded name', async () => {
    await insertId('teams', { organization_id: acme.id, name: 'Builders' });
    await insertId('teams', { organization_id: acme.id, name: 'core team' });
    expect((await load({ type: 'team', org: 'acme', team: 'Builders' })).team).toEqual({ exists: true, in_organization: true });
    expect((await load({ type: 'team', org: 'acme', team: 'builders' })).team).toEqual({ exists: false, in_organization: false });
    expect((await load({ type: 'team', org: 'acme', team: 'core team' })).team).toEqual({ exists: true, in_organization: true });
  });

  it("does not let another organization's team be addressed (R7)", async () => {
    expect((await load({ type: 'team', org: 'acme', team: 'globex-team' })).team).toEqual({ exists: false, in_organization: false });
    expect((await load({ type: 'team', org: 'acme', team: globexOps })).team).toEqual({ exists: true, in_organization: false });
  });
});

describe('PgFactsLoader: roles', () => {
  it("finds the organization's own role by name or id", async () => {
    expect((await load({ type: 'role', org: 'acme', role: 'deployer' })).role).toEqual({
      exists: true,
      in_organization: true,
      builtin: false,
    });
    expect((await load({ type: 'role', org: 'acme', role: acmeDeployer })).role).toEqual({
      exists: true,
      in_organization: true,
      builtin: false,
    });
  });

  it('finds built-in roles in every organization', async () => {
    expect((await load({ type: 'role', org: 'acme', role: 'organization-admin' })).role).toEqual({
      exists: true,
      in_organization: true,
      builtin: true,
    });
    expect((await load({ type: 'role', org: 'empty', role: builtinDefault })).role).toEqual({
      exists: true,
      in_organization: true,
      builtin: true,
    });
  });

  it('does not place built-in roles in an organization that does not exist', async () => {
    expect((await load({ type: 'role', org: 'initech', role: 'default' })).role).toEqual({
      exists: true,
      in_organization: false,
      builtin: true,
    });
    expect((await load({ type: 'role', org: 'initech', role: builtinDefault })).role).toEqual({
      exists: true,
      in_organization: false,
      builtin: true,
    });
  });

  it("does not let another organization's role be addressed (R7)", async () => {
    expect((await load({ type: 'role', org: 'acme', role: 'globex-role' })).role).toEqual({
      exists: false,
      in_organization: false,
      builtin: false,
    });
    expect((await load({ type: 'role', org: 'acme', role: globexDeployer })).role).toEqual({
      exists: true,
      in_organization: false,
      builtin: false,
    });
  });

  it('reports an unknown role as missing', async () => {
    expect((await load({ type: 'role', org: 'acme', role: 'nope' })).role).toEqual({
      exists: false,
      in_organization: false,
      builtin: false,
    });
    expect((await load({ type: 'role', org: 'acme', role: randomUUID() })).role).toEqual({
      exists: false,
      in_organization: false,
      builtin: false,
    });
  });
});

describe('PgFactsLoader: members', () => {
  it('says whether the addressed user is a member of the organization', async () => {
    expect(await load({ type: 'member', org: 'acme', user: acmeMember }, 'member:remove')).toEqual({
      organization: { exists: true },
      member: { exists: true },
    });
    expect((await load({ type: 'member', org: 'acme', user: globexMember }, 'member:remove')).member).toEqual({ exists: false });
    expect((await load({ type: 'member', org: 'acme', user: randomUUID() }, 'member:update')).member).toEqual({ exists: false });
  });

  it('says whether a team member addressed under the organization is a member of it', async () => {
    expect(await load({ type: 'team', org: 'acme', team: 'ops', user: acmeMember }, 'team:update')).toEqual({
      organization: { exists: true },
      team: { exists: true, in_organization: true },
      member: { exists: true },
    });
    expect((await load({ type: 'team', org: 'acme', team: 'ops', user: globexMember }, 'team:update')).member).toEqual({ exists: false });
  });
});

describe('PgFactsLoader: invitations', () => {
  let pending: string;
  let accepted: string;

  beforeAll(async () => {
    pending = await insertId('invitations', { organization_id: acme.id, email: 'Carol@Example.COM', role_id: builtinDefault });
    accepted = await insertId('invitations', { organization_id: globex.id, email: 'dave@example.com', accepted_at: new Date() });
  });

  it('describes a pending invitation with its lower-cased e-mail and organization', async () => {
    expect(await load({ type: 'invitation', invitation: pending }, 'invitation:accept')).toEqual({
      invitation: { exists: true, email: 'carol@example.com', accepted: false, organization: 'acme' },
    });
  });

  it('says when an invitation was already accepted', async () => {
    expect((await load({ type: 'invitation', invitation: accepted }, 'invitation:accept')).invitation).toEqual({
      exists: true,
      email: 'dave@example.com',
      accepted: true,
      organization: 'globex',
    });
  });

  it('reports an unknown invitation as missing', async () => {
    expect((await load({ type: 'invitation', invitation: randomUUID() }, 'invitation:accept')).invitation).toEqual({
      exists: false,
      email: null,
      accepted: false,
      organization: null,
    });
  });
});

describe('PgFactsLoader: malformed identifiers and failures', () => {
  it.each([
    ['member', { type: 'member', org: 'acme', user: 'not-a-uuid' }, 'member', { exists: false }],
    ['member (quoted)', { type: 'member', org: 'acme', user: "x' or 1=1 --" }, 'member', { exists: false }],
    [
      'invitation',
      { type: 'invitation', invitation: '12345' },
      'invitation',
      { exists: false, email: null, accepted: false, organization: null },
    ],
    [
      'project (slug)',
      { type: 'project', org: 'acme', project: '00000000-0000-0000-0000-00000000000g' },
      'project',
      { exists: false, in_organization: false },
    ],
    [
      'team',
      { type: 'team', org: 'acme', team: '{00000000-0000-0000-0000-000000000000}' },
      'team',
      { exists: false, in_organization: false },
    ],
    [
      'role',
      { type: 'role', org: 'acme', role: '0000000000000000000000000000000' },
      'role',
      { exists: false, in_organization: false, builtin: false },
    ],
  ] as const)('treats a malformed %s identifier as missing, never as a SQL error', async (_kind, resource, fact, expected) => {
    expect((await load(resource as Resource))[fact]).toEqual(expected);
  });

  it('loads a fact for every parameter the route table counts as checked (R7)', async () => {
    for (const name of DIRECTORY_CHECKED_PARAMETERS) {
      const facts = await load({ type: 'thing', org: 'acme', [name]: 'x' });
      expect({ name, facts: Object.keys(facts).length }).toEqual({ name, facts: 2 });
    }
  });

  it('loads every fact in one query', async () => {
    const queries: string[] = [];
    const onQuery = (query: { sql: string }) => queries.push(query.sql);
    db.on('query', onQuery);
    try {
      const facts = await load({ type: 'role', org: 'acme', project: 'web', team: 'ops', role: 'deployer' });
      expect(Object.keys(facts).sort()).toEqual(['organization', 'project', 'role', 'team']);
    } finally {
      db.off('query', onQuery);
    }
    expect(queries).toHaveLength(1);
  });

  it('asks nothing of the database when no fact applies', async () => {
    const queries: string[] = [];
    const onQuery = (query: { sql: string }) => queries.push(query.sql);
    db.on('query', onQuery);
    try {
      expect(await load({ type: 'profile', user: 'me' }, 'profile:read')).toEqual({});
    } finally {
      db.off('query', onQuery);
    }
    expect(queries).toEqual([]);
  });

  it('reports a failing query as an unavailable dependency without leaking SQL', async () => {
    const trx = await db.transaction();
    let error: unknown;
    try {
      await trx.raw('alter table projects rename to projects_gone');
      error = await new PgFactsLoader(trx)
        .load({ type: 'project', org: 'acme', project: 'web' }, 'project:read')
        .catch((thrown: unknown) => thrown);
    } finally {
      await trx.rollback();
    }
    expect(error).toBeInstanceOf(DependencyError);
    expect((error as Error).message).not.toMatch(/select|projects|json_build_object/i);
  });
});
