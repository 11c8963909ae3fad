// An organization's members: their default role, their teams, and the rule an identity
// product must never get wrong, that an organization always keeps an organization-admin.
// Every change that can take an admin away locks the organization's row before counting.
import type { Knex } from 'knex';
import { ConflictError } from '../base/errors';
import type { RoleRow } from './role-store';

export interface Member {
  user_id: string;
  email: string | null;
  display_name: string | null;
  role: string;
  teams: string[];
  created_at: string;
}

// A type, not an interface: paginate() takes rows as records.
export type MemberRow = {
  user_id: string;
  email: string | null;
  display_name: string | null;
  role: string | null;
  teams: string[];
  created_at: Date;
};

const ADMIN_ROLE = 'organization-admin';

function isAdminRole(role: RoleRow): boolean {
  return role.organization_id === null && role.name === ADMIN_ROLE;
}

export function toMember(row: MemberRow): Member {
  return {
    user_id: row.user_id,
    email: row.email,
    display_name: row.display_name,
    role: row.role ?? '',
    teams: row.teams,
    created_at: row.created_at.toISOString(),
  };
}

export class MemberStore {
  constructor(private readonly db: Knex | Knex.Transaction) {}

  /**
   * The organization's members for a paginated list. A team counts only when it belongs to
   * this organization; names sort in code-point order, as the gateway's subject does.
   */
  list(organizationId: string): Knex.QueryBuilder {
    return this.db('organization_members as om')
      .join('users as u', 'u.id', 'om.user_id')
      .leftJoin('roles as r', 'r.id', 'om.role_id')
      .where('om.organization_id', organizationId)
      .select(
        'om.user_id',
        'u.email',
        'u.display_name',
        'r.name as role',
        'om.created_at',
        this.db.raw(
          `coalesce((select array_agg(t.name collate "C" order by t.name collate "C")
             from team_members tm join teams t on t.id = tm.team_id and t.organization_id = om.organization_id
             where tm.user_id = om.user_id), '{}'::text[]) as teams`,
        ),
      );
  }

  async get(organizationId: string, userId: string): Promise<Member | undefined> {
    const row = (await this.list(organizationId).where('om.user_id', userId).first()) as MemberRow | undefined;
    return row && toMember(row);
  }

  /** Adds a member; false when the user already is one (nothing changes then). */
  async add(organizationId: string, userId: string, roleId: string): Promise<boolean> {
    const inserted = await this.db('organization_members')
      .insert({ organization_id: organizationId, user_id: userId, role_id: roleId })
      .onConflict(['organization_id', 'user_id'])
      .ignore()
      .returning('user_id');
    return inserted.length > 0;
  }

  /** Changes the member's default role; refused when that would leave no organization-admin. */
  async changeRole(organizationId: string, userId: string, role: RoleRow): Promise<void> {
    if (!isAdminRole(role)) await this.assertAnotherAdmin(organizationId, userId, `demote the last ${ADMIN_ROLE}`);
    await this.db('organization_members').where({ organization_id: organizationId, user_id: userId }).update({ role_id: role.id });
  }

  /**
   * Removes the member and, in the same transaction, every team membership they hold in
   * this organization (team rows left behind would grant nothing, but would come back to
   * life if the user joined again). Refused when it would leave no organization-admin.
   */
  async remove(organizationId: string, userId: string, verb: 'remove' | 'leave'): Promise<void> {
    const what = verb === 'leave' ? `leave as the last ${ADMIN_ROLE}` : `remove the last ${ADMIN_ROLE}`;
    await this.assertAnotherAdmin(organizationId, userId, what);
    // The membership goes first: deleting it waits for a concurrent team join, which holds it
    // FOR SHARE (TeamStore#assertJoinable), so the team rows deleted next include that join's.
    await this.db('organization_members').where({ organization_id: organizationId, user_id: userId }).delete();
    await this.db('team_members')
      .where({ user_id: userId })
      .whereIn('team_id', this.db('teams').where({ organization_id: organizationId }).select('id'))
      .delete();
  }

  /**
   * Throws a 409 when `userId` is an organization-admin (by default role) and no other member
   * is one. The organization's row is locked first, so concurrent demotions and removals
   * queue here and each counts what the previous one committed (READ COMMITTED takes a new
   * snapshot per statement).
   */
  private async assertAnotherAdmin(organizationId: string, userId: string, what: string): Promise<void> {
    await this.db('organizations').where({ id: organizationId }).forUpdate().select('id');
    const admins = await this.db('organization_members as om')
      .join('roles as r', 'r.id', 'om.role_id')
      .where('om.organization_id', organizationId)
      .whereNull('r.organization_id')
      .where('r.name', ADMIN_ROLE)
      .pluck<string[]>('om.user_id');
    if (admins.includes(userId) && admins.length === 1) {
      throw new ConflictError(
        `cannot ${what}: an organization must keep at least one ${ADMIN_ROLE}; make another member ${ADMIN_ROLE} first`,
      );
    }
  }
}
