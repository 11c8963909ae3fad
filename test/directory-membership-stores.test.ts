// The directory service's organization, member and invitation stores on a real PostgreSQL:
// the integrity rules hold at the store level, including under interleaved transactions
// (one is held open while the other runs, so the interleaving is certain, not hoped for).
import type { Knex } from 'knex';
import { ConflictError, ForbiddenError } from '../src/base/errors';
import { InvitationStore } from '../src/directory-service/invitation-store';
import { MemberStore } from '../src/directory-service/member-store';
import { OrganizationStore } from '../src/directory-service/organization-store';
import { RoleStore } from '../src/directory-service/role-store';
import { TeamStore } from '../src/directory-service/team-store';
import { seedDirectory, type Directory } from './support/directory-fixtures';
import { createTestDatabase, type TestDatabase } from './support/test-database';
import { waitFor } from './support/wait-for';

let database: TestDatabase;
let db: Knex;
let dir: Directory;

beforeAll(async () => {
  database = await createTestDatabase();
  db = database.db;
  dir = await seedDirectory(db);
});

afterAll(async () => {
  await database.drop();
});

const role = async (organizationId: string, name: string) => (await new RoleStore(db).findUsable(organizationId, name))!;

/** Resolves once some other session waits for a row lock (the second transaction is queued). */
const someoneWaitsForALock = () =>
  waitFor(
    async () => {
      const { rows } = await db.raw<{ rows: { n: number }[] }>(
        `select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`,
      );
      return rows[0]!.n > 0;
    },
    { what: 'a transaction waiting for a row lock' },
  );

describe('organizations', () => {
  it('creates an organization whose creator is its organization-admin, and refuses a taken slug', async () => {
    const created = await db.transaction((trx) =>
      new OrganizationStore(trx).create({ slug: 'carolco', name: 'Carol Co' }, dir.users.carol),
    );
    expect(created).toMatchObject({ slug: 'carolco', name: 'Carol Co' });
    expect(await new MemberStore(db).get(created!.id, dir.users.carol)).toMatchObject({
      role: 'organization-admin',
      email: 'carol@example.com',
      teams: [],
    });
    expect(
      await db.transaction((trx) => new OrganizationStore(trx).create({ slug: 'carolco', name: 'Again' }, dir.users.erin)),
    ).toBeUndefined();
    expect(await db('organization_members').where({ user_id: dir.users.erin })).toEqual([]);
  });

  it("maps the database's RESTRICT to a 409 naming the projects, and the transaction stays usable", async () => {
    await db.transaction(async (trx) => {
      const store = new OrganizationStore(trx);
      const acme = (await store.findBySlug('acme'))!;
      const refused = store.delete(acme);
      await expect(refused).rejects.toBeInstanceOf(ConflictError);
      await expect(refused).rejects.toThrow("organization 'acme' still has 2 projects (api, web); delete them first");
      expect(await store.findBySlug('acme')).toBeDefined();
    });
  });

  it('deletes an organization without projects, with its members, teams and invitations', async () => {
    const org = (await db.transaction((trx) => new OrganizationStore(trx).create({ slug: 'short-lived', name: 'x' }, dir.users.erin)))!;
    await db('teams').insert({ organization_id: org.id, name: 'ops' });
    await db.transaction((trx) => new OrganizationStore(trx).delete(org));
    expect(await db('organizations').where({ id: org.id })).toEqual([]);
    expect(await db('organization_members').where({ organization_id: org.id })).toEqual([]);
    expect(await db('teams').where({ organization_id: org.id })).toEqual([]);
  });
});

describe('the last organization-admin', () => {
  let org: { id: string; slug: string };
  beforeEach(async () => {
    org = (await db.transaction((trx) => new OrganizationStore(trx).create({ slug: `admins-${Date.now()}`, name: 'x' }, dir.users.alice)))!;
  });

  it('cannot be demoted, removed or leave', async () => {
    const defaultRole = await role(org.id, 'default');
    await expect(db.transaction((trx) => new MemberStore(trx).changeRole(org.id, dir.users.alice, defaultRole))).rejects.toThrow(
      /cannot demote the last organization-admin/,
    );
    await expect(db.transaction((trx) => new MemberStore(trx).remove(org.id, dir.users.alice, 'remove'))).rejects.toBeInstanceOf(
      ConflictError,
    );
    await expect(db.transaction((trx) => new MemberStore(trx).remove(org.id, dir.users.alice, 'leave'))).rejects.toThrow(
      /cannot leave as the last/,
    );
    expect(await new MemberStore(db).get(org.id, dir.users.alice)).toMatchObject({ role: 'organization-admin' });
  });

  it('survives two interleaved demotions of two admins: the second waits for the first and is refused', async () => {
    const admin = await role(org.id, 'organization-admin');
    const defaultRole = await role(org.id, 'default');
    await new MemberStore(db).add(org.id, dir.users.bob, admin.id);

    const first = await db.transaction();
    await new MemberStore(first).changeRole(org.id, dir.users.alice, defaultRole);
    const second = db.transaction((trx) => new MemberStore(trx).changeRole(org.id, dir.users.bob, defaultRole));
    second.catch(() => undefined);
    await someoneWaitsForALock();
    await first.commit();

    await expect(second).rejects.toBeInstanceOf(ConflictError);
    const roles = await db('organization_members as om')
      .join('roles as r', 'r.id', 'om.role_id')
      .where('om.organization_id', org.id)
      .pluck('r.name');
    expect(roles.sort()).toEqual(['default', 'organization-admin']);
  });

  it('survives two interleaved leaves of two admins', async () => {
    const admin = await role(org.id, 'organization-admin');
    await new MemberStore(db).add(org.id, dir.users.bob, admin.id);

    const first = await db.transaction();
    await new MemberStore(first).remove(org.id, dir.users.alice, 'leave');
    const second = db.transaction((trx) => new MemberStore(trx).remove(org.id, dir.users.bob, 'leave'));
    second.catch(() => undefined);
    await someoneWaitsForALock();
    await first.commit();

    await expect(second).rejects.toBeInstanceOf(ConflictError);
    expect(await db('organization_members').where({ organization_id: org.id }).pluck('user_id')).toEqual([dir.users.bob]);
  });
});

describe('members', () => {
  it('removing a member drops their teams of that organization only', async () => {
    const globexTeam = (
      await db('teams').insert({ organization_id: dir.orgs.globex, name: 'globex-ops' }).returning<{ id: string }[]>('id')
    )[0]!.id;
    await db('team_members').insert([
      { team_id: dir.teams.builders, user_id: dir.users.dave },
      { team_id: globexTeam, user_id: dir.users.dave },
    ]);
    expect(await new MemberStore(db).get(dir.orgs.acme, dir.users.dave)).toMatchObject({ teams: ['Builders'], role: 'default' });

    await db.transaction((trx) => new MemberStore(trx).remove(dir.orgs.acme, dir.users.dave, 'remove'));

    expect(await db('team_members').where({ user_id: dir.users.dave }).pluck('team_id')).toEqual([globexTeam]);
    expect(await new MemberStore(db).get(dir.orgs.acme, dir.users.dave)).toBeUndefined();
    await db('organization_members').insert({
      organization_id: dir.orgs.acme,
      user_id: dir.users.dave,
      role_id: (await role(dir.orgs.acme, 'default')).id,
    });
  });

  it('a removal racing a team join leaves no team membership behind', async () => {
    const first = await db.transaction();
    const teams = new TeamStore(first);
    expect(await teams.addMember((await teams.find(dir.orgs.acme, 'core team'))!, dir.users.dave)).toBe(true);
    const removal = db.transaction((trx) => new MemberStore(trx).remove(dir.orgs.acme, dir.users.dave, 'remove'));
    removal.catch(() => undefined);
    await someoneWaitsForALock();
    await first.commit();
    await removal;

    expect(await db('team_members').where({ user_id: dir.users.dave, team_id: dir.teams.coreTeam })).toEqual([]);
    await db('organization_members').insert({
      organization_id: dir.orgs.acme,
      user_id: dir.users.dave,
      role_id: (await role(dir.orgs.acme, 'default')).id,
    });
  });
});

describe('invitations', () => {
  const invite = (email: string, roleRow: Awaited<ReturnType<typeof role>>, expiresInDays = 7) =>
    db.transaction((trx) =>
      new InvitationStore(trx).create(dir.orgs.acme, { email, role: roleRow, expiresInDays, invitedBy: dir.users.alice }),
    );
  const accept = (id: string, invitee: { id: string; email: string | null; email_verified: boolean }) =>
    db.transaction((trx) => new InvitationStore(trx).accept(id, invitee, new MemberStore(trx)));

  it('refuses a second pending invitation for the same address (any case) and one for a member', async () => {
    const defaultRole = await role(dir.orgs.acme, 'default');
    const created = await invite('New.Person@example.com', defaultRole, 3);
    expect(created).toMatchObject({ email: 'New.Person@example.com', role: 'default', state: 'pending', accepted_at: null });
    const days = (created.expires_at.getTime() - created.created_at.getTime()) / 86_400_000;
    expect(days).toBeCloseTo(3, 3);
    await expect(invite('new.person@EXAMPLE.com', defaultRole)).rejects.toThrow(
      /a pending invitation for new.person@EXAMPLE.com already exists/,
    );
    await expect(invite('BOB@example.com', defaultRole)).rejects.toThrow(/already belongs to a member/);
  });

  it("binds acceptance to the invitee's verified address, and creates the membership with the invitation's role", async () => {
    const projectCreator = await role(dir.orgs.acme, 'project-creator');
    const { id } = await invite('erin@example.com', projectCreator);
    await expect(accept(id, { id: dir.users.carol, email: 'carol@example.com', email_verified: true })).rejects.toThrow(
      /addressed to another e-mail/,
    );
    await expect(accept(id, { id: dir.users.erin, email: 'ERIN@example.com', email_verified: false })).rejects.toBeInstanceOf(
      ForbiddenError,
    );
    expect(await db('organization_members').where({ organization_id: dir.orgs.acme, user_id: dir.users.erin })).toEqual([]);

    const { after } = await accept(id, { id: dir.users.erin, email: 'ERIN@example.com', email_verified: true });
    expect(after).toMatchObject({ state: 'accepted' });
    expect(await new MemberStore(db).get(dir.orgs.acme, dir.users.erin)).toMatchObject({ role: 'project-creator' });
    await expect(accept(id, { id: dir.users.erin, email: 'erin@example.com', email_verified: true })).rejects.toThrow(/is accepted/);
  });

  it('accepts once under two interleaved accepts', async () => {
    await db('users').where({ id: dir.users.carol }).update({ email_verified: true });
    const first = await db.transaction();
    await new InvitationStore(first).accept(
      dir.invitations.carol,
      { id: dir.users.carol, email: 'carol@example.com', email_verified: true },
      new MemberStore(first),
    );
    const second = accept(dir.invitations.carol, { id: dir.users.carol, email: 'carol@example.com', email_verified: true });
    second.catch(() => undefined);
    await someoneWaitsForALock();
    await first.commit();

    await expect(second).rejects.toBeInstanceOf(ConflictError);
    expect(await db('organization_members').where({ organization_id: dir.orgs.acme, user_id: dir.users.carol })).toHaveLength(1);
  });

  it('refuses expired and revoked invitations', async () => {
    const defaultRole = await role(dir.orgs.acme, 'default');
    const user = (
      await db('users').insert({ subject: 'frank|sub', email: 'frank@example.com', email_verified: true }).returning<{ id: string }[]>('id')
    )[0]!.id;
    const frank = { id: user, email: 'frank@example.com', email_verified: true };

    const expired = await invite('frank@example.com', defaultRole);
    await db('invitations')
      .where({ id: expired.id })
      .update({ expires_at: db.raw(`now() - interval '1 second'`) });
    await expect(accept(expired.id, frank)).rejects.toThrow(/is expired/);

    const revoked = await invite('frank@example.com', defaultRole);
    const revoke = () =>
      db.transaction(async (trx) => {
        const store = new InvitationStore(trx);
        return store.revoke((await store.get(dir.orgs.acme, revoked.id, { lock: true }))!);
      });
    expect((await revoke()).state).toBe('revoked');
    await expect(revoke()).rejects.toBeInstanceOf(ConflictError);
    await expect(accept(revoked.id, frank)).rejects.toThrow(/is revoked/);
    expect(await db('organization_members').where({ user_id: user })).toEqual([]);
  });
});
