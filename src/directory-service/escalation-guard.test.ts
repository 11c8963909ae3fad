// The no-escalation guard against a real PostgreSQL: the caller's permissions are counted as
// the gateway counts them (R4, clause by clause), and a grant beyond them is refused by name.
import type { Knex } from 'knex';
import { ForbiddenError } from '../base/errors';
import { PgSubjectLoader } from '../directory/pg-subject-loader';
import { createTestDatabase, type TestDatabase } from '../../test/support/test-database';
import { assertNoEscalation, heldPermissions } from './escalation-guard';

let database: TestDatabase;
let db: Knex;
let builtin: { admin: string; default: string };

beforeAll(async () => {
  database = await createTestDatabase();
  db = database.db;
  const roles = await db('roles').whereNull('organization_id').select<{ id: string; name: string }[]>('id', 'name');
  builtin = { admin: roles.find((r) => r.name === 'organization-admin')!.id, default: roles.find((r) => r.name === 'default')!.id };
});

afterAll(async () => {
  await database.drop();
});

let counter = 0;
const user = async () =>
  (
    await db('users')
      .insert({ subject: `guard-${++counter}` })
      .returning(['id', 'subject'])
  )[0] as { id: string; subject: string };
const organization = async () =>
  (
    await db('organizations')
      .insert({ slug: `guard-org-${++counter}`, name: 'org' })
      .returning(['id', 'slug'])
  )[0] as { id: string; slug: string };
const role = async (organizationId: string | null, permissions: string[]) =>
  (
    await db('roles')
      .insert({ organization_id: organizationId, name: `role-${++counter}`, permissions })
      .returning<{ id: string }[]>('id')
  )[0]!.id;
const team = async (organizationId: string, roleIds: string[], memberIds: string[]) => {
  const id = (
    await db('teams')
      .insert({ organization_id: organizationId, name: `team-${++counter}` })
      .returning<{ id: string }[]>('id')
  )[0]!.id;
  for (const roleId of roleIds) await db('team_roles').insert({ team_id: id, role_id: roleId });
  for (const userId of memberIds) await db('team_members').insert({ team_id: id, user_id: userId });
  return id;
};

describe('the permissions a caller holds in an organization', () => {
  it('are the default role plus the roles of their teams there, as the gateway counts them', async () => {
    const org = await organization();
    const other = await organization();
    const caller = await user();
    await db('organization_members').insert({ organization_id: org.id, user_id: caller.id, role_id: builtin.default });
    await team(org.id, [await role(org.id, ['credential:read', 'project:*'])], [caller.id]);
    // Neither a role of another organization on the caller's team, nor a team of another organization, counts.
    await team(org.id, [await role(other.id, ['credential:delete'])], [caller.id]);
    await team(other.id, [await role(other.id, ['role:create'])], [caller.id]);

    const held = await heldPermissions(db, caller.id, org.id);
    expect(held.sort()).toEqual(['credential:read', 'member:read', 'organization:read', 'project:*', 'project:read', 'team:read']);
    const subject = await new PgSubjectLoader(db).load(caller.subject);
    expect(held.sort()).toEqual(subject.memberships[org.slug]!.permissions);
  });

  it('are none for a non-member, even one left in a team of the organization', async () => {
    const org = await organization();
    const outsider = await user();
    await team(org.id, [builtin.admin], [outsider.id]);
    expect(await heldPermissions(db, outsider.id, org.id)).toEqual([]);
    expect(await heldPermissions(db, null, org.id)).toEqual([]);
  });
});

describe('assertNoEscalation', () => {
  it('refuses a grant beyond the caller’s permissions, naming each one missing', async () => {
    const org = await organization();
    const caller = await user();
    await db('organization_members').insert({
      organization_id: org.id,
      user_id: caller.id,
      role_id: await role(org.id, ['role:create', 'project:*']),
    });

    const refusal = assertNoEscalation(db, {
      actorUserId: caller.id,
      organizationId: org.id,
      permissions: ['project:delete', 'credential:delete', 'audit:read'],
    });
    await expect(refusal).rejects.toBeInstanceOf(ForbiddenError);
    await expect(refusal).rejects.toThrow(
      'you cannot grant permissions you do not hold in this organization: audit:read, credential:delete (',
    );
    await expect(assertNoEscalation(db, { actorUserId: caller.id, organizationId: org.id, permissions: ['*'] })).rejects.toThrow(
      'hold in this organization: * (',
    );
  });

  it('allows what the caller holds exactly, through resource:* or through *', async () => {
    const org = await organization();
    const member = await user();
    const admin = await user();
    await db('organization_members').insert([
      { organization_id: org.id, user_id: member.id, role_id: await role(org.id, ['role:create', 'project:*']) },
      { organization_id: org.id, user_id: admin.id, role_id: builtin.admin },
    ]);
    await expect(
      assertNoEscalation(db, {
        actorUserId: member.id,
        organizationId: org.id,
        permissions: ['role:create', 'project:delete', 'project:*'],
      }),
    ).resolves.toBeUndefined();
    await expect(
      assertNoEscalation(db, { actorUserId: admin.id, organizationId: org.id, permissions: ['*', 'credential:delete'] }),
    ).resolves.toBeUndefined();
    await expect(assertNoEscalation(db, { actorUserId: null, organizationId: org.id, permissions: [] })).resolves.toBeUndefined();
  });

  it('sees the caller’s permissions as the surrounding transaction changed them', async () => {
    const org = await organization();
    const caller = await user();
    await db('organization_members').insert({ organization_id: org.id, user_id: caller.id, role_id: builtin.default });
    const trx = await db.transaction();
    try {
      await trx('organization_members').where({ organization_id: org.id, user_id: caller.id }).update({ role_id: builtin.admin });
      await expect(
        assertNoEscalation(trx, { actorUserId: caller.id, organizationId: org.id, permissions: ['credential:delete'] }),
      ).resolves.toBeUndefined();
    } finally {
      await trx.rollback();
    }
    await expect(
      assertNoEscalation(db, { actorUserId: caller.id, organizationId: org.id, permissions: ['credential:delete'] }),
    ).rejects.toThrow('credential:delete');
  });
});
