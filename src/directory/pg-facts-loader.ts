// The facts read model: what the policy needs to know about the addressed resource (design
// §3.4 `facts`), in one SQL round trip. Each fact is one JSON column of a single SELECT;
// only the facts the resource (and, for R5, the action) needs are asked for.
import type { Knex } from 'knex';
import { DependencyError } from '../base/errors';
import type { Resource } from '../routes/route';
import type { Facts, FactsLoader } from './subject';
import { isUuid } from '../db/uuid';
import { readAtVersion } from './directory-version';

/** How many project slugs an organization:delete denial may name (R5). */
export const PROJECT_SLUG_SAMPLE = 5;

/** One `<sql> as <fact>` column of the facts query with its positional bindings. */
export interface FactColumn {
  name: string;
  sql: string;
  bindings: readonly string[];
}

// `org` is a CTE holding the addressed organization's id (no row when it does not exist).
function organizationFact(action: string): FactColumn {
  if (action !== 'organization:delete')
    return { name: 'organization', sql: `json_build_object('exists', exists(select 1 from org))`, bindings: [] };
  return {
    name: 'organization',
    sql: `json_build_object(
      'exists', exists(select 1 from org),
      'project_count', (select count(*) from projects p join org on org.id = p.organization_id),
      'project_slugs', coalesce((
        select json_agg(s.slug order by s.slug collate "C")
        from (select p.slug from projects p join org on org.id = p.organization_id order by p.slug collate "C" limit ${PROJECT_SLUG_SAMPLE}) s
      ), '[]'::json))`,
    bindings: [],
  };
}

// A project, team or credential is addressed by id (anywhere, then checked against the
// organization, R7) or by its slug/name, which only means something inside the organization.
// Values arrive percent-decoded and case-preserved, and are compared exactly.
function scopedFact(
  name: 'project' | 'team' | 'credential',
  table: 'projects' | 'teams' | 'credentials',
  key: 'slug' | 'name',
  value: string,
): FactColumn {
  if (isUuid(value)) {
    return {
      name,
      sql: `json_build_object(
        'exists', exists(select 1 from ${table} x where x.id = ?),
        'in_organization', exists(select 1 from ${table} x join org on org.id = x.organization_id where x.id = ?))`,
      bindings: [value, value],
    };
  }
  return {
    name,
    sql: `(select json_build_object('exists', e, 'in_organization', e)
      from (select exists(select 1 from ${table} x join org on org.id = x.organization_id where x.${key} = ?) as e) found)`,
    bindings: [value],
  };
}

// Built-in roles are in every existing organization. By name, the organization's own role of that
// name is the one meant; a built-in role of the same name is the fallback.
function roleFact(value: string): FactColumn {
  const found = isUuid(value)
    ? `select r.organization_id is null as builtin,
         coalesce((r.organization_id is null and exists(select 1 from org)) or r.organization_id = (select id from org), false) as in_organization
       from roles r where r.id = ?`
    : `select r.organization_id is null as builtin, exists(select 1 from org) as in_organization
       from roles r
       where r.name = ? and (r.organization_id is null or r.organization_id = (select id from org))
       order by r.organization_id is null
       limit 1`;
  return {
    name: 'role',
    sql: `coalesce(
      (select json_build_object('exists', true, 'in_organization', f.in_organization, 'builtin', f.builtin) from (${found}) f),
      json_build_object('exists', false, 'in_organization', false, 'builtin', false))`,
    bindings: [value],
  };
}

function memberFact(userId: string): FactColumn {
  if (!isUuid(userId)) return { name: 'member', sql: `json_build_object('exists', false)`, bindings: [] };
  return {
    name: 'member',
    sql: `json_build_object('exists', exists(select 1 from organization_members m join org on org.id = m.organization_id where m.user_id = ?))`,
    bindings: [userId],
  };
}

// Under `/orgs/{org}/invitations/{invitation}` the invitation must be that organization's (R7);
// `/invitations/{invitation}/accept` addresses it alone, and the policy checks the addressee.
function invitationFact(invitationId: string, underOrganization: boolean): FactColumn {
  const scope = underOrganization ? `, 'in_organization', coalesce(i.organization_id = (select id from org), false)` : '';
  const missing = `json_build_object('exists', false, 'email', null, 'accepted', false, 'organization', null${underOrganization ? `, 'in_organization', false` : ''})`;
  if (!isUuid(invitationId)) return { name: 'invitation', sql: missing, bindings: [] };
  return {
    name: 'invitation',
    sql: `coalesce((
      select json_build_object('exists', true, 'email', lower(i.email), 'accepted', i.accepted_at is not null, 'organization', o.slug${scope})
      from invitations i join organizations o on o.id = i.organization_id
      where i.id = ?), ${missing})`,
    bindings: [invitationId],
  };
}

/**
 * The facts the resource needs, in the order they appear in the query: one per parameter
 * of an organization's route (route.ts DIRECTORY_CHECKED_PARAMETERS), and the invitation accepted.
 */
export function factColumns(resource: Resource, action: string): FactColumn[] {
  const columns: FactColumn[] = [];
  if (resource.org !== undefined) columns.push(organizationFact(action));
  if (resource.project !== undefined) columns.push(scopedFact('project', 'projects', 'slug', resource.project));
  if (resource.team !== undefined) columns.push(scopedFact('team', 'teams', 'name', resource.team));
  if (resource.role !== undefined) columns.push(roleFact(resource.role));
  if (resource.credential !== undefined) columns.push(scopedFact('credential', 'credentials', 'slug', resource.credential));
  // A user addressed under an organization (as its member, or a team's) must be a member of it.
  if (resource.org !== undefined && resource.user !== undefined) columns.push(memberFact(resource.user));
  if (resource.invitation !== undefined) columns.push(invitationFact(resource.invitation, resource.org !== undefined));
  return columns;
}

/** The CTE the fact columns read the addressed organization from; its one binding is the slug (or null). */
export const ORG_CTE = 'org as (select id from organizations where slug = ?)';

export function factSelectList(columns: readonly FactColumn[]): string {
  return columns.map((column) => `${column.sql} as ${column.name}`).join(',\n');
}

export class PgFactsLoader implements FactsLoader {
  constructor(private readonly db: Knex | Knex.Transaction) {}

  async load(resource: Resource, action: string): Promise<Facts> {
    const columns = factColumns(resource, action);
    if (columns.length === 0) return {};
    // The directory version is read in the same snapshot as the facts.
    const sql = `with ${ORG_CTE}
      select ${factSelectList(columns)},
      (select version from directory_version) as directory_version`;
    const bindings: (string | null)[] = [resource.org ?? null, ...columns.flatMap((column) => column.bindings)];
    let row: (Facts & { directory_version?: string | null }) | undefined;
    try {
      ({
        rows: [row],
      } = await this.db.raw<{ rows: (Facts & { directory_version?: string | null })[] }>(sql, bindings));
    } catch (error) {
      throw new DependencyError('the directory database is unavailable: could not load the facts of the request', { cause: error });
    }
    if (!row) throw new DependencyError('the directory database returned no facts');
    const { directory_version: version, ...facts } = row;
    return readAtVersion(facts, version);
  }
}
