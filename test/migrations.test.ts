// The migrations against a real PostgreSQL: the schema is design §3.1 (plus the decision log),
// built-in roles exist, and re-running or rolling back behaves.
import { migrateToLatest, migrationConfig } from '../src/db/database';
import { createTestDatabase, type TestDatabase } from './support/test-database';

let database: TestDatabase;

beforeAll(async () => {
  database = await createTestDatabase();
});

afterAll(async () => {
  await database.drop();
});

async function columnsOf(table: string): Promise<Record<string, { type: string; nullable: boolean; default: string | null }>> {
  const rows = await database.db('information_schema.columns')
    .select<{ column_name: string; data_type: string; is_nullable: string; column_default: string | null }[]>('column_name', 'data_type', 'is_nullable', 'column_default')
    .where({ table_schema: 'public', table_name: table });
  return Object.fromEntries(rows.map((row) => [row.column_name, { type: row.data_type, nullable: row.is_nullable === 'YES', default: row.column_default }]));
}

async function foreignKeys(table: string): Promise<string[]> {
  const { rows } = await database.db.raw<{ rows: { definition: string }[] }>(
    `select pg_get_constraintdef(oid) as definition from pg_constraint where conrelid = ?::regclass and contype = 'f' order by 1`,
    [table],
  );
  return rows.map((row) => row.definition);
}

async function uniqueKeys(table: string): Promise<string[]> {
  const { rows } = await database.db.raw<{ rows: { definition: string }[] }>(
    `select pg_get_constraintdef(oid) as definition from pg_constraint where conrelid = ?::regclass and contype in ('u', 'p') order by 1`,
    [table],
  );
  return rows.map((row) => row.definition);
}

const UUID = 'uuid';
const TEXT = 'text';
const TIMESTAMPTZ = 'timestamp with time zone';

describe('directory schema (design §3.1)', () => {
  it.each([
    ['users', { id: UUID, subject: TEXT, email: TEXT, display_name: TEXT, picture_url: TEXT, created_at: TIMESTAMPTZ, updated_at: TIMESTAMPTZ }],
    ['organizations', { id: UUID, slug: TEXT, name: TEXT, created_at: TIMESTAMPTZ }],
    ['roles', { id: UUID, organization_id: UUID, name: TEXT, permissions: 'ARRAY' }],
    ['organization_members', { organization_id: UUID, user_id: UUID, role_id: UUID, created_at: TIMESTAMPTZ }],
    ['teams', { id: UUID, organization_id: UUID, name: TEXT }],
    ['team_members', { team_id: UUID, user_id: UUID }],
    ['team_roles', { team_id: UUID, role_id: UUID }],
    ['projects', { id: UUID, organization_id: UUID, slug: TEXT, name: TEXT }],
    ['invitations', { id: UUID, organization_id: UUID, email: TEXT, role_id: UUID, accepted_at: TIMESTAMPTZ, created_at: TIMESTAMPTZ }],
  ])('%s has exactly the columns of the design', async (table, expected) => {
    const columns = await columnsOf(table);
    expect(Object.fromEntries(Object.entries(columns).map(([name, column]) => [name, column.type]))).toEqual(expected);
  });

  it('makes the columns the design requires not null', async () => {
    const required: Record<string, string[]> = {
      users: ['id', 'subject', 'created_at', 'updated_at'],
      organizations: ['id', 'slug', 'name', 'created_at'],
      roles: ['id', 'name', 'permissions'],
      organization_members: ['organization_id', 'user_id', 'role_id', 'created_at'],
      teams: ['id', 'organization_id', 'name'],
      projects: ['id', 'organization_id', 'slug'],
      invitations: ['id', 'organization_id', 'email', 'created_at'],
    };
    for (const [table, names] of Object.entries(required)) {
      const columns = await columnsOf(table);
      const notNull = Object.entries(columns).filter(([, column]) => !column.nullable).map(([name]) => name).sort();
      expect({ table, notNull }).toEqual({ table, notNull: [...names].sort() });
    }
    expect((await columnsOf('roles')).organization_id?.nullable).toBe(true);
    expect((await columnsOf('invitations')).accepted_at?.nullable).toBe(true);
  });

  it('generates uuid primary keys and creation times in the database', async () => {
    const [user] = await database.db('users').insert({ subject: 'schema-defaults' }).returning(['id', 'created_at', 'updated_at']);
    expect(user.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(user.created_at).toBeInstanceOf(Date);
    expect(user.updated_at).toBeInstanceOf(Date);
    await database.db('users').where({ id: user.id }).delete();
  });

  it('declares the foreign keys with the delete behaviour of the design', async () => {
    expect(await foreignKeys('roles')).toEqual(['FOREIGN KEY (organization_id) REFERENCES organizations(id) ON DELETE CASCADE']);
    expect(await foreignKeys('organization_members')).toEqual([
      'FOREIGN KEY (organization_id) REFERENCES organizations(id) ON DELETE CASCADE',
      'FOREIGN KEY (role_id) REFERENCES roles(id)',
      'FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE',
    ]);
    expect(await foreignKeys('teams')).toEqual(['FOREIGN KEY (organization_id) REFERENCES organizations(id) ON DELETE CASCADE']);
    expect(await foreignKeys('team_members')).toEqual([
      'FOREIGN KEY (team_id) REFERENCES teams(id) ON DELETE CASCADE',
      'FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE',
    ]);
    expect(await foreignKeys('team_roles')).toEqual([
      'FOREIGN KEY (role_id) REFERENCES roles(id) ON DELETE CASCADE',
      'FOREIGN KEY (team_id) REFERENCES teams(id) ON DELETE CASCADE',
    ]);
    expect(await foreignKeys('projects')).toEqual(['FOREIGN KEY (organization_id) REFERENCES organizations(id) ON DELETE RESTRICT']);
    expect(await foreignKeys('invitations')).toEqual([
      'FOREIGN KEY (organization_id) REFERENCES organizations(id) ON DELETE CASCADE',
      'FOREIGN KEY (role_id) REFERENCES roles(id)',
    ]);
  });

  it('declares the primary and unique keys of the design', async () => {
    expect(await uniqueKeys('users')).toEqual(['PRIMARY KEY (id)', 'UNIQUE (subject)']);
    expect(await uniqueKeys('organizations')).toEqual(['PRIMARY KEY (id)', 'UNIQUE (slug)']);
    expect(await uniqueKeys('roles')).toEqual(['PRIMARY KEY (id)', 'UNIQUE (organization_id, name)']);
    expect(await uniqueKeys('organization_members')).toEqual(['PRIMARY KEY (organization_id, user_id)']);
    expect(await uniqueKeys('teams')).toEqual(['PRIMARY KEY (id)', 'UNIQUE (organization_id, name)']);
    expect(await uniqueKeys('team_members')).toEqual(['PRIMARY KEY (team_id, user_id)']);
    expect(await uniqueKeys('team_roles')).toEqual(['PRIMARY KEY (team_id, role_id)']);
    expect(await uniqueKeys('projects')).toEqual(['PRIMARY KEY (id)', 'UNIQUE (organization_id, slug)']);
    expect(await uniqueKeys('invitations')).toEqual(['PRIMARY KEY (id)']);
  });

  it('indexes the columns the read models look up by', async () => {
    const { rows } = await database.db.raw<{ rows: { indexdef: string }[] }>(`select indexdef from pg_indexes where schemaname = 'public'`);
    const definitions = rows.map((row) => row.indexdef.replace(/^CREATE (UNIQUE )?INDEX \S+ ON public\./, ''));
    expect(definitions).toEqual(
      expect.arrayContaining([
        'organization_members USING btree (user_id)',
        'team_members USING btree (user_id)',
        'team_roles USING btree (role_id)',
        'teams USING btree (organization_id, name)',
        'projects USING btree (organization_id, slug)',
        'invitations USING btree (lower(email))',
        'roles USING btree (name) WHERE (organization_id IS NULL)',
      ]),
    );
  });

  it('creates the built-in roles without an organization', async () => {
    const roles = await database.db('roles').select('name', 'permissions').whereNull('organization_id').orderBy('name');
    expect(roles).toEqual([
      { name: 'default', permissions: ['organization:read', 'member:read', 'team:read', 'project:read'] },
      { name: 'organization-admin', permissions: ['*'] },
    ]);
  });

  it('refuses a second built-in role with the same name', async () => {
    await expect(database.db('roles').insert({ organization_id: null, name: 'default', permissions: ['*'] })).rejects.toMatchObject({ code: '23505' });
  });

  it('refuses to delete an organization that still has projects (R5, ON DELETE RESTRICT)', async () => {
    const [org] = await database.db('organizations').insert({ slug: 'restricted', name: 'Restricted' }).returning('id');
    await database.db('projects').insert({ organization_id: org.id, slug: 'api' });
    await expect(database.db('organizations').where({ id: org.id }).delete()).rejects.toMatchObject({ code: '23001' }); // restrict_violation

    await database.db('projects').where({ organization_id: org.id }).delete();
    expect(await database.db('organizations').where({ id: org.id }).delete()).toBe(1);
  });

  it('removes an organization\'s roles, members, teams and invitations with it', async () => {
    const [org] = await database.db('organizations').insert({ slug: 'cascade', name: 'Cascade' }).returning('id');
    const [user] = await database.db('users').insert({ subject: 'cascade-user' }).returning('id');
    const [role] = await database.db('roles').insert({ organization_id: org.id, name: 'deployer', permissions: ['pipeline:run'] }).returning('id');
    const [team] = await database.db('teams').insert({ organization_id: org.id, name: 'ops' }).returning('id');
    await database.db('organization_members').insert({ organization_id: org.id, user_id: user.id, role_id: role.id });
    await database.db('team_members').insert({ team_id: team.id, user_id: user.id });
    await database.db('team_roles').insert({ team_id: team.id, role_id: role.id });
    await database.db('invitations').insert({ organization_id: org.id, email: 'x@example.com', role_id: role.id });

    await database.db('organizations').where({ id: org.id }).delete();

    for (const table of ['roles', 'teams', 'organization_members', 'invitations']) {
      expect({ table, rows: await database.db(table).where({ organization_id: org.id }) }).toEqual({ table, rows: [] });
    }
    expect(await database.db('team_members').where({ user_id: user.id })).toEqual([]);
    expect(await database.db('team_roles').where({ role_id: role.id })).toEqual([]);
    await database.db('users').where({ id: user.id }).delete();
  });
});

describe('decision log schema (design §3.6)', () => {
  it('has a column for every field of a decision record', async () => {
    const columns = await columnsOf('decisions');
    expect(Object.fromEntries(Object.entries(columns).map(([name, column]) => [name, column.type]))).toEqual({
      id: UUID,
      time: TIMESTAMPTZ,
      request_id: TEXT,
      subject: TEXT,
      user_id: UUID,
      organization: TEXT,
      action: TEXT,
      resource: 'jsonb',
      method: TEXT,
      path: TEXT,
      allow: 'boolean',
      status: 'smallint',
      reasons: 'ARRAY',
      policy_revision: TEXT,
      eval_latency_us: 'integer',
      input: 'jsonb',
      dry_run: 'boolean',
      seq: 'bigint',
      prev_hash: TEXT,
      hash: TEXT,
    });
    expect(await foreignKeys('decisions')).toEqual([]);
  });

  it('indexes decisions by time, subject, organization, action and outcome', async () => {
    const { rows } = await database.db.raw<{ rows: { indexdef: string }[] }>(`select indexdef from pg_indexes where tablename = 'decisions'`);
    const definitions = rows.map((row) => row.indexdef.replace(/^CREATE (UNIQUE )?INDEX \S+ ON (ONLY )?public\.decisions USING btree /, ''));
    expect(definitions).toEqual(expect.arrayContaining(['("time")', '(subject, "time")', '(organization, "time")', '(action, "time")', '(allow, "time")']));
  });
});

describe('running the migrations', () => {
  it('does nothing when the database is already up to date', async () => {
    expect(await migrateToLatest(database.db)).toEqual([]);
  });

  it('rolls back completely and migrates up again with the built-in roles', async () => {
    await database.db.migrate.rollback(migrationConfig(), true);
    const { rows } = await database.db.raw<{ rows: { table_name: string }[] }>(
      `select table_name from information_schema.tables where table_schema = 'public' and table_name not like 'portcullis_migrations%'`,
    );
    expect(rows).toEqual([]);

    expect(await migrateToLatest(database.db)).toEqual(expect.arrayContaining(['20261128000001_directory.js', '20261128000002_decisions.js']));
    expect(await database.db('roles').whereNull('organization_id').count({ n: '*' })).toEqual([{ n: '2' }]);
  });
});
