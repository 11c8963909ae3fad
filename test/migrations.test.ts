// The migrations against a real PostgreSQL: the schema is design §3.1 (plus the decision log),
// built-in roles exist, and re-running or rolling back behaves: a rollback that would delete
// data refuses, saying how to export it first.
import type { Knex } from 'knex';
import { verifyChain } from '../src/audit/chain/decision-chain-verifier';
import { PgDecisionQueryStore } from '../src/audit/store/pg-decision-query-store';
import { PgShadowDisagreementStore } from '../src/audit/store/pg-shadow-disagreement-store';
import { migrateToLatest, migrationConfig } from '../src/db/database';
import { appendDecisions } from './support/audit-helpers';
import { seedDirectory } from './support/directory-fixtures';
import type { Inserted } from './support/rows';
import { createTestDatabase, type TestDatabase } from './support/test-database';

let database: TestDatabase;

beforeAll(async () => {
  database = await createTestDatabase();
});

afterAll(async () => {
  await database.drop();
});

async function columnsOf(table: string): Promise<Record<string, { type: string; nullable: boolean; default: string | null }>> {
  const rows = await database
    .db('information_schema.columns')
    .select<{ column_name: string; data_type: string; is_nullable: string; column_default: string | null }[]>(
      'column_name',
      'data_type',
      'is_nullable',
      'column_default',
    )
    .where({ table_schema: 'public', table_name: table });
  return Object.fromEntries(
    rows.map((row) => [row.column_name, { type: row.data_type, nullable: row.is_nullable === 'YES', default: row.column_default }]),
  );
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
    [
      'users',
      {
        id: UUID,
        subject: TEXT,
        email: TEXT,
        email_verified: 'boolean',
        display_name: TEXT,
        picture_url: TEXT,
        created_at: TIMESTAMPTZ,
        updated_at: TIMESTAMPTZ,
      },
    ],
    ['organizations', { id: UUID, slug: TEXT, name: TEXT, created_at: TIMESTAMPTZ }],
    ['roles', { id: UUID, organization_id: UUID, name: TEXT, permissions: 'ARRAY' }],
    ['organization_members', { organization_id: UUID, user_id: UUID, role_id: UUID, created_at: TIMESTAMPTZ }],
    ['teams', { id: UUID, organization_id: UUID, name: TEXT }],
    ['team_members', { team_id: UUID, user_id: UUID }],
    ['team_roles', { team_id: UUID, role_id: UUID }],
    ['projects', { id: UUID, organization_id: UUID, slug: TEXT, name: TEXT }],
    [
      'invitations',
      {
        id: UUID,
        organization_id: UUID,
        email: TEXT,
        role_id: UUID,
        accepted_at: TIMESTAMPTZ,
        created_at: TIMESTAMPTZ,
        expires_at: TIMESTAMPTZ,
        revoked_at: TIMESTAMPTZ,
        invited_by: UUID,
        accepted_by: UUID,
      },
    ],
    ['user_pictures', { user_id: UUID, content_type: TEXT, data: 'bytea', updated_at: TIMESTAMPTZ }],
    [
      'directory_events',
      {
        id: 'bigint',
        time: TIMESTAMPTZ,
        actor: UUID,
        action: TEXT,
        organization_id: UUID,
        organization_slug: TEXT,
        target_type: TEXT,
        target_id: TEXT,
        before: 'jsonb',
        after: 'jsonb',
        request_id: TEXT,
        decision_id: UUID,
      },
    ],
    [
      'idempotency_keys',
      {
        actor: TEXT,
        key: TEXT,
        method: TEXT,
        path: TEXT,
        body_hash: TEXT,
        status: 'integer',
        headers: 'jsonb',
        body: 'jsonb',
        created_at: TIMESTAMPTZ,
      },
    ],
  ])('%s has exactly the columns of the design', async (table, expected) => {
    const columns = await columnsOf(table);
    expect(Object.fromEntries(Object.entries(columns).map(([name, column]) => [name, column.type]))).toEqual(expected);
  });

  it('makes the columns the design requires not null', async () => {
    const required: Record<string, string[]> = {
      users: ['id', 'subject', 'email_verified', 'created_at', 'updated_at'],
      organizations: ['id', 'slug', 'name', 'created_at'],
      roles: ['id', 'name', 'permissions'],
      organization_members: ['organization_id', 'user_id', 'role_id', 'created_at'],
      teams: ['id', 'organization_id', 'name'],
      projects: ['id', 'organization_id', 'slug'],
      invitations: ['id', 'organization_id', 'email', 'created_at', 'expires_at'],
      user_pictures: ['user_id', 'content_type', 'data', 'updated_at'],
      directory_events: ['id', 'time', 'action', 'target_type'],
      idempotency_keys: ['actor', 'key'],
    };
    for (const [table, names] of Object.entries(required)) {
      const columns = await columnsOf(table);
      const notNull = Object.entries(columns)
        .filter(([, column]) => !column.nullable)
        .map(([name]) => name)
        .sort();
      expect({ table, notNull }).toEqual({ table, notNull: [...names].sort() });
    }
    expect((await columnsOf('roles')).organization_id?.nullable).toBe(true);
    expect((await columnsOf('invitations')).accepted_at?.nullable).toBe(true);
  });

  it('generates uuid primary keys and creation times in the database', async () => {
    const [user] = (await database
      .db('users')
      .insert({ subject: 'schema-defaults' })
      .returning(['id', 'created_at', 'updated_at'])) as Inserted<{ id: string; created_at: Date; updated_at: Date }>;
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
      'FOREIGN KEY (accepted_by) REFERENCES users(id) ON DELETE SET NULL',
      'FOREIGN KEY (invited_by) REFERENCES users(id) ON DELETE SET NULL',
      'FOREIGN KEY (organization_id) REFERENCES organizations(id) ON DELETE CASCADE',
      'FOREIGN KEY (role_id) REFERENCES roles(id)',
    ]);
    expect(await foreignKeys('user_pictures')).toEqual(['FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE']);
    expect(await foreignKeys('directory_events')).toEqual([]);
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
    await expect(database.db('roles').insert({ organization_id: null, name: 'default', permissions: ['*'] })).rejects.toMatchObject({
      code: '23505',
    });
  });

  it('refuses to delete an organization that still has projects (R5, ON DELETE RESTRICT)', async () => {
    const [org] = (await database.db('organizations').insert({ slug: 'restricted', name: 'Restricted' }).returning('id')) as Inserted;
    await database.db('projects').insert({ organization_id: org.id, slug: 'api' });
    await expect(database.db('organizations').where({ id: org.id }).delete()).rejects.toMatchObject({ code: '23001' }); // restrict_violation

    await database.db('projects').where({ organization_id: org.id }).delete();
    expect(await database.db('organizations').where({ id: org.id }).delete()).toBe(1);
  });

  it("removes an organization's roles, members, teams and invitations with it", async () => {
    const [org] = (await database.db('organizations').insert({ slug: 'cascade', name: 'Cascade' }).returning('id')) as Inserted;
    const [user] = (await database.db('users').insert({ subject: 'cascade-user' }).returning('id')) as Inserted;
    const [role] = (await database
      .db('roles')
      .insert({ organization_id: org.id, name: 'deployer', permissions: ['pipeline:run'] })
      .returning('id')) as Inserted;
    const [team] = (await database.db('teams').insert({ organization_id: org.id, name: 'ops' }).returning('id')) as Inserted;
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
      input_text: TEXT,
      dry_run: 'boolean',
      directory_version: 'bigint',
      code: TEXT,
      code_params: 'jsonb',
      recorded_at: TIMESTAMPTZ,
      seq: 'bigint',
      chain: TEXT,
      chain_seq: 'bigint',
      prev_hash: TEXT,
      hash: TEXT,
    });
    expect(await foreignKeys('decisions')).toEqual([]);
  });

  it('indexes decisions by time and seq, and by subject, organization, action and outcome in seq order', async () => {
    const { rows } = await database.db.raw<{ rows: { indexdef: string }[] }>(
      `select indexdef from pg_indexes where tablename = 'decisions'`,
    );
    const definitions = rows.map((row) =>
      row.indexdef.replace(/^CREATE (UNIQUE )?INDEX \S+ ON (ONLY )?public\.decisions USING btree /, ''),
    );
    expect(definitions).toEqual(
      expect.arrayContaining([
        '("time")',
        '(seq)',
        '(chain, chain_seq)',
        '(subject, seq)',
        '(organization, seq)',
        '(action, seq)',
        '(allow, seq)',
      ]),
    );
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

    expect(await migrateToLatest(database.db)).toEqual(
      expect.arrayContaining(['20261128000001_directory.js', '20261128000002_decisions.js']),
    );
    expect(await database.db('roles').whereNull('organization_id').count({ n: '*' })).toEqual([{ n: '2' }]);
  });
});

const completedIn = async (db: Knex) =>
  ((await db.migrate.list(migrationConfig())) as [{ name: string }[], unknown[]])[0].map((migration) => migration.name);

/** Rolls back one migration at a time until one refuses; returns that refusal (or undefined when all ran). */
async function rollBackUntilRefused(db: Knex): Promise<Error | undefined> {
  while ((await completedIn(db)).length > 0) {
    try {
      await db.migrate.down(migrationConfig());
    } catch (error) {
      return error as Error;
    }
  }
  return undefined;
}

describe('rolling back a populated database', () => {
  let populated: TestDatabase;
  beforeEach(async () => {
    populated = await createTestDatabase();
    await seedDirectory(populated.db);
    // The newer credentials registry refuses first (tested on its own below).
    await populated.db('credentials').delete();
  });
  afterEach(async () => populated?.drop());

  it('refuses to delete shadow disagreements, then dry-run records, saying how to export them first', async () => {
    await appendDecisions(populated.db, 20);
    await appendDecisions(populated.db, 1, 20, () => ({ dryRun: true }));
    await new PgShadowDisagreementStore(populated.db).insertMany([
      {
        id: '00000000-0000-4000-8000-000000000001',
        time: new Date(),
        decisionId: '00000000-0000-4000-8000-000000000002',
        requestId: 'r-1',
        subject: null,
        organization: null,
        action: 'project:read',
        method: 'GET',
        path: '/orgs/acme/projects',
        active: { revision: 'a', decision: { allow: true, status: 200, reasons: [] } },
        shadow: { revision: 'b', decision: { allow: false, status: 403, reasons: [] } },
        input: {},
      },
    ]);

    const shadow = await rollBackUntilRefused(populated.db);
    expect(shadow?.message).toMatch(
      /refusing to roll back: policy_shadow_disagreements holds 1 rows .*export them first .*\\copy policy_shadow_disagreements/,
    );
    expect(await completedIn(populated.db)).toContain('20261128000031_policy_shadow_disagreements.js');
    expect(await populated.db('policy_shadow_disagreements').count({ n: '*' })).toEqual([{ n: '1' }]);

    await populated.db('policy_shadow_disagreements').delete();
    const dryRun = await rollBackUntilRefused(populated.db);
    expect(dryRun?.message).toMatch(/refusing to roll back: 1 decision records are dry runs, .*decisions query --format ndjson/);
    expect(await completedIn(populated.db)).toContain('20261128000030_decision_dry_run.js');
    expect(await populated.db('decisions').where({ dry_run: true }).count({ n: '*' })).toEqual([{ n: '1' }]);

    await migrateToLatest(populated.db);
    expect(await verifyChain(new PgDecisionQueryStore(populated.db))).toMatchObject({ ok: true, checked: 21 });
  });

  it('rolls back every migration that keeps the records, refuses to drop the decision log, and verify passes after re-applying', async () => {
    await appendDecisions(populated.db, 1200);
    const refusal = await rollBackUntilRefused(populated.db);
    expect(refusal?.message).toMatch(
      /refusing to roll back: the decision log holds 1200 records .*npx portcullis decisions query --format ndjson --limit 1200/,
    );
    expect(await completedIn(populated.db)).toEqual(['20261128000001_directory.js', '20261128000002_decisions.js']);
    expect(await populated.db('decisions').count({ n: '*' })).toEqual([{ n: '1200' }]);

    await migrateToLatest(populated.db);
    expect(await verifyChain(new PgDecisionQueryStore(populated.db))).toMatchObject({ ok: true, checked: 1200 });
  });

  it('refuses to drop a directory that holds users and organizations', async () => {
    const refusal = await rollBackUntilRefused(populated.db);
    expect(refusal?.message).toMatch(
      /refusing to roll back: the directory holds \d+ users, organizations and organization roles .*pg_dump/,
    );
    expect(await completedIn(populated.db)).toEqual(['20261128000001_directory.js']);
    await migrateToLatest(populated.db);
  });
});

describe('role names (built-in names are reserved)', () => {
  it.each(['organization-admin', 'default', 'Organization-Admin'])(
    'refuses an organization role named %s, on insert and on rename',
    async (name) => {
      const [org] = (await database
        .db('organizations')
        .insert({ slug: `reserved-${name.toLowerCase()}`, name: 'Reserved' })
        .returning('id')) as Inserted;
      try {
        await expect(database.db('roles').insert({ organization_id: org.id, name, permissions: ['project:read'] })).rejects.toMatchObject({
          code: '23514',
          constraint: 'roles_builtin_names_reserved',
        });
        const [role] = (await database
          .db('roles')
          .insert({ organization_id: org.id, name: 'deployer', permissions: ['project:read'] })
          .returning('id')) as Inserted;
        await expect(database.db('roles').where({ id: role.id }).update({ name })).rejects.toMatchObject({ code: '23514' });
      } finally {
        await database.db('organizations').where({ id: org.id }).delete();
      }
    },
  );

  it('fails the migration, naming the rows, when an organization role already uses a reserved name', async () => {
    const other = await createTestDatabase();
    try {
      while ((await completedIn(other.db)).includes('20261130000004_role_names.js')) await other.db.migrate.down(migrationConfig());
      const [org] = (await other.db('organizations').insert({ slug: 'lookalike', name: 'Look-alike' }).returning('id')) as Inserted;
      await other.db('roles').insert({ organization_id: org.id, name: 'organization-admin', permissions: ['project:read'] });
      await expect(migrateToLatest(other.db)).rejects.toThrow(
        /organization roles use a built-in role's name .*'organization-admin' of lookalike .*rename them/,
      );
      await other.db('roles').where({ organization_id: org.id }).update({ name: 'org-admin' });
      await migrateToLatest(other.db);
      expect(await completedIn(other.db)).toContain('20261130000004_role_names.js');
    } finally {
      await other.drop();
    }
  });
});

describe('credentials registry and lower-case slugs (R7)', () => {
  it('has id, organization, slug, name and creation time, and nothing secret', async () => {
    const columns = await columnsOf('credentials');
    expect(Object.fromEntries(Object.entries(columns).map(([name, column]) => [name, column.type]))).toEqual({
      id: UUID,
      organization_id: UUID,
      slug: TEXT,
      name: TEXT,
      created_at: TIMESTAMPTZ,
    });
    expect(
      Object.entries(columns)
        .filter(([, column]) => !column.nullable)
        .map(([name]) => name)
        .sort(),
    ).toEqual(['created_at', 'id', 'organization_id', 'slug']);
    expect(await foreignKeys('credentials')).toEqual(['FOREIGN KEY (organization_id) REFERENCES organizations(id) ON DELETE CASCADE']);
    expect(await uniqueKeys('credentials')).toEqual(['PRIMARY KEY (id)', 'UNIQUE (organization_id, slug)']);
  });

  it("removes an organization's credentials with it", async () => {
    const [org] = (await database.db('organizations').insert({ slug: 'credential-cascade', name: 'Cascade' }).returning('id')) as Inserted;
    await database.db('credentials').insert({ organization_id: org.id, slug: 'aws', name: 'AWS' });
    await database.db('organizations').where({ id: org.id }).delete();
    expect(await database.db('credentials').where({ organization_id: org.id })).toEqual([]);
  });

  it('notifies the directory channel in every session mode, like the other directory tables', async () => {
    const { rows } = await database.db.raw<{ rows: { tgname: string; tgenabled: string }[] }>(
      `select tgname, tgenabled from pg_trigger where tgrelid = 'credentials'::regclass and not tgisinternal order by tgname`,
    );
    expect(rows).toEqual(
      ['delete', 'insert', 'truncate', 'update'].map((event) => ({ tgname: `portcullis_notify_${event}`, tgenabled: 'A' })),
    );
  });

  it.each([
    ['organizations', { slug: 'ACME', name: 'Upper' }],
    ['projects', { slug: 'Web' }],
  ])('refuses an upper-case slug in %s, on insert and on rename', async (table, row) => {
    const [org] = (await database.db('organizations').insert({ slug: 'slug-case', name: 'Slug case' }).returning('id')) as Inserted;
    try {
      const values = table === 'projects' ? { ...row, organization_id: org.id } : row;
      await expect(database.db(table).insert(values)).rejects.toMatchObject({ code: '23514', constraint: `${table}_slug_lower_case` });
      const [project] = (await database.db('projects').insert({ organization_id: org.id, slug: 'web' }).returning('id')) as Inserted;
      const target = table === 'projects' ? project.id : org.id;
      await expect(database.db(table).where({ id: target }).update({ slug: row.slug })).rejects.toMatchObject({ code: '23514' });
      await database.db('projects').where({ id: project.id }).delete();
    } finally {
      await database.db('organizations').where({ id: org.id }).delete();
    }
  });

  it('refuses to roll back while the registry holds credentials, saying how to dump them', async () => {
    const other = await createTestDatabase();
    try {
      await seedDirectory(other.db);
      const refusal = await rollBackUntilRefused(other.db);
      expect(refusal?.message).toMatch(/refusing to roll back: the credentials registry holds 2 rows .*pg_dump --data-only -t credentials/);
      expect(await completedIn(other.db)).toContain('20261130000001_credentials.js');
      await other.db('credentials').delete();
      await other.db.migrate.down(migrationConfig());
      expect(await completedIn(other.db)).not.toContain('20261130000001_credentials.js');
      await migrateToLatest(other.db);
    } finally {
      await other.drop();
    }
  });

  it('fails the migration, naming the rows, while a slug is not lower-case', async () => {
    const other = await createTestDatabase();
    try {
      while ((await completedIn(other.db)).includes('20261130000001_credentials.js')) await other.db.migrate.down(migrationConfig());
      const [org] = (await other.db('organizations').insert({ slug: 'Globex', name: 'Globex' }).returning('id')) as Inserted;
      await expect(migrateToLatest(other.db)).rejects.toThrow(
        /organizations\.slug must be lower-case, but these are not: 'Globex' \(id [0-9a-f-]{36}\); lower-case them/,
      );
      await other.db('organizations').where({ id: org.id }).update({ slug: 'globex' });
      await migrateToLatest(other.db);
      expect(await completedIn(other.db)).toContain('20261130000001_credentials.js');
    } finally {
      await other.drop();
    }
  });
});

describe('directory service tables (issue 12)', () => {
  it('refuses to roll back while the change record, pictures or revocations would be lost, and rolls back once they are gone', async () => {
    const other = await createTestDatabase();
    try {
      while ((await completedIn(other.db)).some((name) => name > '20261130000010_directory_service.js'))
        await other.db.migrate.down(migrationConfig());
      const [user] = (await other.db('users').insert({ subject: 'pictured', email_verified: true }).returning('id')) as Inserted;
      await other.db('user_pictures').insert({ user_id: user.id, content_type: 'image/png', data: Buffer.from([0x89, 0x50]) });
      await other.db('directory_events').insert({ action: 'user.register', target_type: 'user', target_id: user.id });

      await expect(other.db.migrate.down(migrationConfig())).rejects.toThrow(
        /refusing to roll back: the directory service's data would be lost \(1 events, 1 pictures\); export it first/,
      );
      expect(await completedIn(other.db)).toContain('20261130000010_directory_service.js');

      await other.db('directory_events').delete();
      await other.db('user_pictures').delete();
      await other.db.migrate.down(migrationConfig());
      expect(await completedIn(other.db)).not.toContain('20261130000010_directory_service.js');
      expect(await other.db.schema.hasColumn('users', 'email_verified')).toBe(false);
    } finally {
      await other.drop();
    }
  });

  it('defaults an invitation to expire in seven days, and a user to an unverified e-mail', async () => {
    const [org] = (await database.db('organizations').insert({ slug: 'expiring', name: 'Expiring' }).returning('id')) as Inserted;
    try {
      const [invitation] = (await database
        .db('invitations')
        .insert({ organization_id: org.id, email: 'x@example.com' })
        .returning(['created_at', 'expires_at'])) as Inserted<{ created_at: Date; expires_at: Date }>;
      expect(invitation.expires_at.getTime() - invitation.created_at.getTime()).toBe(7 * 24 * 3600 * 1000);
      const [user] = (await database.db('users').insert({ subject: 'unverified' }).returning('email_verified')) as Inserted<{
        email_verified: boolean;
      }>;
      expect(user.email_verified).toBe(false);
      await database.db('users').where({ subject: 'unverified' }).delete();
    } finally {
      await database.db('organizations').where({ id: org.id }).delete();
    }
  });
});
