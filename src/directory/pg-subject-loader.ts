// The subject read model: the caller's user row and every membership with its counted roles
// and permissions (R4), in one SQL round trip. What counts is decided here, in SQL, so the
// policy receives exactly the permissions a member holds in each organization (R3).
import type { Knex } from 'knex';
import { DependencyError } from '../base/errors';
import { readAtVersion } from './directory-version';
import type { Membership, Subject, SubjectLoader } from './subject';

// R4, clause by clause:
//  - memberships: one row per organization_members row of the user; the default role counts
//    only when it is built-in or belongs to that organization (else `role` is '').
//  - member_teams: the user's teams of that same organization; a team_members row without an
//    organization_members row never joins, so it grants nothing.
//  - counted_roles: the default role plus the teams' roles that are built-in or the
//    organization's own; roles of another organization are ignored.
// Names sort with COLLATE "C" (code-point order), the order JavaScript's sort() gives.
// The CTEs alone (one binding: the token's sub), so PgDirectoryReader can put them in a statement of its own.
export const SUBJECT_CTES = `
subject_user as (
  select u.id, u.email from users u where u.subject = ?
),
memberships as (
  select om.organization_id, o.slug, om.user_id, r.id as role_id, r.name as role
  from subject_user su
  join organization_members om on om.user_id = su.id
  join organizations o on o.id = om.organization_id
  left join roles r on r.id = om.role_id
    and (r.organization_id is null or r.organization_id = om.organization_id)
),
member_teams as (
  select m.organization_id, t.id as team_id, t.name
  from memberships m
  join team_members tm on tm.user_id = m.user_id
  join teams t on t.id = tm.team_id and t.organization_id = m.organization_id
),
counted_roles as (
  select m.organization_id, m.role_id from memberships m where m.role_id is not null
  union
  select mt.organization_id, r.id
  from member_teams mt
  join team_roles tr on tr.team_id = mt.team_id
  join roles r on r.id = tr.role_id
    and (r.organization_id is null or r.organization_id = mt.organization_id)
),
team_names as (
  select organization_id, array_agg(name collate "C" order by name collate "C") as teams
  from member_teams group by organization_id
),
grants as (
  select cr.organization_id,
         array_agg(distinct r.name collate "C" order by r.name collate "C") as roles,
         array_agg(distinct p.permission collate "C" order by p.permission collate "C")
           filter (where p.permission is not null) as permissions
  from counted_roles cr
  join roles r on r.id = cr.role_id
  left join lateral unnest(r.permissions) as p(permission) on true
  group by cr.organization_id
),
subject as (
select su.id, su.email,
  coalesce(
    json_object_agg(m.slug, json_build_object(
      'role', coalesce(m.role, ''),
      'teams', coalesce(tn.teams, '{}'::text[]),
      'roles', coalesce(g.roles, '{}'::text[]),
      'permissions', coalesce(g.permissions, '{}'::text[])
    )) filter (where m.slug is not null),
    '{}'::json
  ) as memberships
from subject_user su
left join memberships m on true
left join team_names tn on tn.organization_id = m.organization_id
left join grants g on g.organization_id = m.organization_id
group by su.id, su.email
)`;

/** The subject's columns and the directory version: one row even for a subject without a users row. */
export const SUBJECT_SELECT = `select s.id, s.email, s.memberships, dv.version as directory_version`;
export const SUBJECT_FROM = `from directory_version dv left join subject s on true`;

const SUBJECT_SQL = `with ${SUBJECT_CTES}\n${SUBJECT_SELECT}\n${SUBJECT_FROM}`;

export interface SubjectRow {
  id: string | null;
  email: string | null;
  memberships: Record<string, Membership> | null;
  directory_version: string;
}

export class PgSubjectLoader implements SubjectLoader {
  constructor(private readonly db: Knex | Knex.Transaction) {}

  async load(sub: string): Promise<Subject> {
    let rows: SubjectRow[];
    try {
      // A named (prepared) statement: planning this query costs more than running it, and
      // each pooled connection then plans it once (bench:scale in BENCHMARKS.md).
      ({ rows } = await this.db.raw<{ rows: SubjectRow[] }>(SUBJECT_SQL, [sub]).options({ name: 'portcullis_subject' }));
    } catch (error) {
      throw new DependencyError('the directory database is unavailable: could not load the caller', { cause: error });
    }
    return subjectFromRow(sub, rows[0]);
  }
}

export function subjectFromRow(sub: string, row: SubjectRow | undefined): Subject {
  if (!row?.id) return readAtVersion({ id: null, sub, email: null, memberships: {} }, row?.directory_version);
  return readAtVersion({ id: row.id, sub, email: row.email, memberships: row.memberships ?? {} }, row.directory_version);
}
