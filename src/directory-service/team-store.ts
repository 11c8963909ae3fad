// Teams as the directory service writes them: named uniquely in their organization, joined
// only by the organization's members, carrying only built-in roles or the organization's own
// (what R4 counts), so the tables never hold a grant the gateway would silently ignore.
import type { Knex } from 'knex';
import { ConflictError, InputError } from '../base/errors';
import { isUuid } from '../db/uuid';
import { writeInOrganization } from './organization-write';
import type { RoleRow } from './role-store';

export interface TeamRow {
  id: string;
  organization_id: string;
  name: string;
}

export interface Team {
  id: string;
  name: string;
  /** The roles the team carries that count (R4), in code-point order. */
  roles: string[];
  member_count: number;
}

export interface TeamMember {
  user_id: string;
  email: string | null;
  display_name: string | null;
}

// The team with what its representation needs: counted roles and its number of members.
const TEAM_COLUMNS = (db: Knex | Knex.Transaction) => [
  't.id',
  't.name',
  db.raw(`coalesce((
      select array_agg(r.name collate "C" order by r.name collate "C")
      from team_roles tr join roles r on r.id = tr.role_id
      where tr.team_id = t.id and (r.organization_id is null or r.organization_id = t.organization_id)
    ), '{}'::text[]) as roles`),
  db.raw('(select count(*)::int from team_members tm where tm.team_id = t.id) as member_count'),
];

export class TeamStore {
  constructor(private readonly db: Knex | Knex.Transaction) {}

  /** The organization's teams as representations, for a paginated list. */
  list(organizationId: string): Knex.QueryBuilder {
    return this.db('teams as t')
      .where('t.organization_id', organizationId)
      .select(...TEAM_COLUMNS(this.db));
  }

  /**
   * The team `ref` names in the organization: by id, or by its exact (case-preserved) name,
   * as the gateway's facts loader resolves it. `lock` holds the row until the transaction ends.
   */
  async find(organizationId: string, ref: string, options: { lock?: boolean } = {}): Promise<TeamRow | undefined> {
    const query = this.db<TeamRow>('teams')
      .where({ organization_id: organizationId })
      .where(isUuid(ref) ? { id: ref } : { name: ref })
      .first('id', 'organization_id', 'name');
    return options.lock ? query.forUpdate() : query;
  }

  async representation(teamId: string): Promise<Team> {
    const team: Team | undefined = await this.db('teams as t')
      .where('t.id', teamId)
      .first(...TEAM_COLUMNS(this.db));
    if (!team) throw new Error(`team ${teamId} vanished inside its own transaction`);
    return team;
  }

  async create(organizationId: string, name: string): Promise<TeamRow> {
    const [row] = await this.guarded(name, () =>
      this.db('teams')
        .insert({ organization_id: organizationId, name })
        .onConflict(['organization_id', 'name'])
        .ignore()
        .returning<TeamRow[]>(['id', 'organization_id', 'name']),
    );
    if (!row) throw nameTaken(name);
    return row;
  }

  async rename(team: TeamRow, name: string): Promise<TeamRow> {
    if (name === team.name) return team;
    const [row] = await this.guarded(name, () =>
      this.db('teams').where({ id: team.id }).update({ name }).returning<TeamRow[]>(['id', 'organization_id', 'name']),
    );
    return row!;
  }

  /** Deletes the team; its memberships and role attachments go with it (ON DELETE CASCADE). */
  async delete(team: TeamRow): Promise<void> {
    await this.db('teams').where({ id: team.id }).delete();
  }

  /** The team's members, for a paginated list. */
  members(team: TeamRow): Knex.QueryBuilder {
    return this.db('team_members as tm')
      .join('users as u', 'u.id', 'tm.user_id')
      .where('tm.team_id', team.id)
      .select('tm.user_id', 'u.email', 'u.display_name');
  }

  async member(team: TeamRow, userId: string): Promise<TeamMember | undefined> {
    if (!isUuid(userId)) return undefined;
    return this.members(team).where('tm.user_id', userId).first<TeamMember | undefined>();
  }

  /**
   * Refuses (422) a user who is not a member of the team's organization. Their membership is
   * locked (FOR SHARE) until the transaction ends, so a removal from the organization, which
   * deletes its team memberships, cannot slip in between this check and the insert.
   */
  async assertJoinable(team: TeamRow, userId: string): Promise<void> {
    const membership = isUuid(userId)
      ? await this.db('organization_members')
          .where({ organization_id: team.organization_id, user_id: userId })
          .forShare()
          .first<{ user_id: string } | undefined>('user_id')
      : undefined;
    if (!membership) throw new InputError(`user '${userId}' is not a member of this organization; only its members join its teams`, 422);
  }

  /** Adds a member of the organization to the team; true when they were not in it yet. */
  async addMember(team: TeamRow, userId: string): Promise<boolean> {
    await this.assertJoinable(team, userId);
    const inserted = await this.db('team_members')
      .insert({ team_id: team.id, user_id: userId })
      .onConflict(['team_id', 'user_id'])
      .ignore()
      .returning('user_id');
    return inserted.length > 0;
  }

  /** Removes the user from the team; false when they were not in it. */
  async removeMember(team: TeamRow, userId: string): Promise<boolean> {
    if (!isUuid(userId)) return false;
    return (await this.db('team_members').where({ team_id: team.id, user_id: userId }).delete()) > 0;
  }

  /** The roles the team carries that count (built-in or the organization's), for a paginated list. */
  roles(team: TeamRow): Knex.QueryBuilder {
    return this.db('team_roles as tr')
      .join('roles as r', 'r.id', 'tr.role_id')
      .where('tr.team_id', team.id)
      .where((where) => {
        where.whereNull('r.organization_id').orWhere('r.organization_id', team.organization_id);
      })
      .select('r.id', 'r.organization_id', 'r.name', 'r.permissions');
  }

  /**
   * Attaches a role the caller resolved in the team's organization (RoleStore#findUsable);
   * true when it was not attached yet. A role of another organization is refused here too.
   * Resolve it with `lock: 'share'`, so it is neither deleted nor changed before this commits.
   */
  async attachRole(team: TeamRow, role: RoleRow): Promise<boolean> {
    if (role.organization_id !== null && role.organization_id !== team.organization_id) {
      throw new InputError(`role '${role.name}' belongs to another organization; only built-in roles or this organization's attach`, 422);
    }
    const inserted = await this.db('team_roles')
      .insert({ team_id: team.id, role_id: role.id })
      .onConflict(['team_id', 'role_id'])
      .ignore()
      .returning('role_id');
    return inserted.length > 0;
  }

  async detachRole(team: TeamRow, role: RoleRow): Promise<boolean> {
    return (await this.db('team_roles').where({ team_id: team.id, role_id: role.id }).delete()) > 0;
  }

  private guarded<T>(name: string, write: () => Promise<T>): Promise<T> {
    return writeInOrganization(write, (cause) => nameTaken(name, cause));
  }
}

function nameTaken(name: string, cause?: unknown): ConflictError {
  return new ConflictError(`a team named '${name}' already exists in this organization`, cause === undefined ? undefined : { cause });
}
