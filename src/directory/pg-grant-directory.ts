// Read model for explaining decisions to policy authors: who a subject reference names, and
// which roles of an organization grant a permission (with the teams that carry them). Never
// on the request path: only dry runs (admin evaluate, `portcullis explain`) ask it.
import type { Knex } from 'knex';
import { DependencyError } from '../base/errors';
import { isUuid } from '../db/uuid';

export interface RoleGrant {
  role: string;
  /** Built-in roles (organization_id NULL) exist in every organization. */
  builtin: boolean;
  /** The role's permissions that grant it: the permission itself, `resource:*` or `*`. */
  via: string[];
  /** Teams of the organization that carry the role, by name. */
  teams: string[];
}

/** What members of an organization can be given (R4): usable roles with all their permissions, and teams with their usable roles. */
export interface OrganizationGrants {
  roles: Array<{ name: string; permissions: string[] }>;
  teams: Array<{ name: string; roles: string[] }>;
}

/** The columns of `users` this read model looks at. */
interface UserRow {
  id: string;
  subject: string;
}

export class PgGrantDirectory {
  constructor(private readonly db: Knex | Knex.Transaction) {}

  /** The JWT `sub` a reference names: a users.subject itself, else the subject of the user with that id. */
  async subjectFor(reference: string): Promise<string | undefined> {
    try {
      const bySubject = await this.db<UserRow>('users').first('subject').where({ subject: reference });
      if (bySubject) return bySubject.subject;
      if (!isUuid(reference)) return undefined;
      const byId = await this.db<UserRow>('users').first('subject').where({ id: reference });
      return byId?.subject;
    } catch (error) {
      throw new DependencyError('the directory database is unavailable: could not look up the subject', { cause: error });
    }
  }

  /** Roles usable in the organization (built-in or its own) holding any of `permissions`; built-in first. */
  async grantsFor(organization: string, permissions: readonly string[]): Promise<RoleGrant[]> {
    try {
      const { rows } = await this.db.raw<{ rows: RoleGrant[] }>(
        `with org as (select id from organizations where slug = ?)
        select r.name as role,
               r.organization_id is null as builtin,
               array(select p from unnest(r.permissions) p where p = any(?::text[]) order by p collate "C") as via,
               coalesce(array_agg(t.name order by t.name collate "C") filter (where t.id is not null), '{}') as teams
        from org
        join roles r on r.organization_id is null or r.organization_id = org.id
        left join team_roles tr on tr.role_id = r.id
        left join teams t on t.id = tr.team_id and t.organization_id = org.id
        where r.permissions && ?::text[]
        group by r.id, r.name, r.organization_id
        order by r.organization_id is not null, r.name collate "C"`,
        [organization, [...permissions], [...permissions]],
      );
      return rows;
    } catch (error) {
      throw new DependencyError('the directory database is unavailable: could not list the roles that grant the permission', {
        cause: error,
      });
    }
  }

  /** The roles usable in the organization (built-in or its own) and its teams with the usable roles they carry: what explain adds to a subject to try a grant. */
  async grantsIn(organization: string): Promise<OrganizationGrants> {
    try {
      const roles = await this.db.raw<{ rows: OrganizationGrants['roles'] }>(
        `select r.name, r.permissions from roles r
        where r.organization_id is null or r.organization_id = (select id from organizations where slug = ?)
        order by r.name collate "C"`,
        [organization],
      );
      const teams = await this.db.raw<{ rows: OrganizationGrants['teams'] }>(
        `select t.name,
               coalesce(array_agg(r.name order by r.name collate "C") filter (where r.id is not null), '{}') as roles
        from teams t
        join organizations o on o.id = t.organization_id and o.slug = ?
        left join team_roles tr on tr.team_id = t.id
        left join roles r on r.id = tr.role_id and (r.organization_id is null or r.organization_id = t.organization_id)
        group by t.id, t.name
        order by t.name collate "C"`,
        [organization],
      );
      return { roles: roles.rows, teams: teams.rows };
    } catch (error) {
      throw new DependencyError('the directory database is unavailable: could not list the roles and teams of the organization', {
        cause: error,
      });
    }
  }
}
