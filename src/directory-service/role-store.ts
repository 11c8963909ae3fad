// Roles as the directory service writes them: the built-in roles (read-only, in every
// organization) and each organization's own. A role in use is never deleted from under its
// holders, and a built-in role's name is never taken (a database constraint has the last word).
import type { Knex } from 'knex';
import { ConflictError, ForbiddenError } from '../base/errors';
import { isUuid } from '../db/uuid';
import { writeInOrganization } from './organization-write';

export interface RoleRow {
  id: string;
  organization_id: string | null;
  name: string;
  permissions: string[];
}

export interface Role {
  id: string;
  name: string;
  permissions: string[];
  builtin: boolean;
}

export function toRole(row: RoleRow): Role {
  return { id: row.id, name: row.name, permissions: [...row.permissions].sort(), builtin: row.organization_id === null };
}

const CHECK_VIOLATION = '23514';
/** Migration 20261130000004: an organization's role cannot take a built-in role's name. */
const RESERVED_NAMES_CONSTRAINT = 'roles_builtin_names_reserved';
/** How many holders of each kind a refused deletion names. */
const NAMED_USES = 5;
const COLUMNS = ['r.id', 'r.organization_id', 'r.name', 'r.permissions'] as const;

export class RoleStore {
  constructor(private readonly db: Knex | Knex.Transaction) {}

  /** The roles usable in the organization, built-in ones included, for a paginated list. */
  list(organizationId: string): Knex.QueryBuilder {
    return this.db('roles as r')
      .where((where) => {
        where.whereNull('r.organization_id').orWhere('r.organization_id', organizationId);
      })
      .select(...COLUMNS);
  }

  /**
   * The role `ref` names in the organization, as the gateway's facts loader resolves it: by
   * id, a built-in role or one of the organization's own; by name, the organization's own
   * role first and a built-in role of that name otherwise. `lock` holds the row until the
   * transaction ends: 'update' to change or delete it (a deletion must not race a new
   * holder), 'share' to grant it (its permissions must not change before the grant commits).
   */
  async findUsable(organizationId: string, ref: string, options: { lock?: 'update' | 'share' } = {}): Promise<RoleRow | undefined> {
    const query = this.db<RoleRow>('roles as r')
      .where((where) => {
        where.whereNull('r.organization_id').orWhere('r.organization_id', organizationId);
      })
      .where(isUuid(ref) ? 'r.id' : 'r.name', ref)
      .orderByRaw('r.organization_id is null')
      .first<RoleRow | undefined>(...COLUMNS);
    if (options.lock === 'update') return query.forUpdate();
    return options.lock === 'share' ? query.forShare() : query;
  }

  /** Creates an organization's role; a name taken in the organization or reserved is a 409. */
  async create(organizationId: string, input: { name: string; permissions: readonly string[] }): Promise<RoleRow> {
    const [row] = await this.guarded(input.name, () =>
      this.db('roles')
        .insert({ organization_id: organizationId, name: input.name, permissions: [...input.permissions] })
        .onConflict(['organization_id', 'name'])
        .ignore()
        .returning<RoleRow[]>(['id', 'organization_id', 'name', 'permissions']),
    );
    if (!row) throw nameTaken(input.name);
    return row;
  }

  async update(role: RoleRow, change: { name?: string; permissions?: readonly string[] }): Promise<RoleRow> {
    assertMutable(role, 'changed');
    const values: Partial<Pick<RoleRow, 'name' | 'permissions'>> = {};
    if (change.name !== undefined) values.name = change.name;
    if (change.permissions !== undefined) values.permissions = [...change.permissions];
    if (Object.keys(values).length === 0) return role;
    const [row] = await this.guarded(change.name ?? role.name, () =>
      this.db('roles').where({ id: role.id }).update(values).returning<RoleRow[]>(['id', 'organization_id', 'name', 'permissions']),
    );
    return row!;
  }

  /**
   * Deletes an organization's role that nothing uses. In use means: some member's default
   * role, carried by a team, or offered by a pending invitation; the 409 names them. The
   * role's row must be locked (findUsable with `lock`) so no holder appears meanwhile.
   * Invitations that are no longer pending (accepted, revoked, expired) only remember the
   * role: they let it go (role_id null) rather than keep it forever.
   */
  async delete(role: RoleRow): Promise<void> {
    assertMutable(role, 'deleted');
    const uses = await this.uses(role.id);
    if (uses.length > 0) throw new ConflictError(`role '${role.name}' is in use: ${uses.join('; ')}; change or remove those first`);
    await this.db('invitations').where({ role_id: role.id }).update({ role_id: null });
    await this.db('roles').where({ id: role.id }).delete();
  }

  /** One phrase per kind of use, each naming a few of its holders. */
  private async uses(roleId: string): Promise<string[]> {
    const members = await this.sample(
      this.db('organization_members as om').join('users as u', 'u.id', 'om.user_id').where('om.role_id', roleId),
      'coalesce(u.email, u.id::text)',
    );
    const teams = await this.sample(
      this.db('team_roles as tr').join('teams as t', 't.id', 'tr.team_id').where('tr.role_id', roleId),
      't.name',
    );
    const invitations = await this.sample(
      this.db('invitations as i')
        .where('i.role_id', roleId)
        .whereNull('i.accepted_at')
        .whereNull('i.revoked_at')
        .where('i.expires_at', '>', this.db.fn.now()),
      'i.email',
    );
    return [
      describe(members, 'the default role of', 'member', 'members'),
      describe(teams, 'carried by', 'team', 'teams'),
      describe(invitations, 'offered by', 'pending invitation', 'pending invitations'),
    ].filter((phrase): phrase is string => phrase !== null);
  }

  /** The first few labels in code-point order, and how many rows there are in all. */
  private async sample(query: Knex.QueryBuilder, label: string): Promise<{ labels: string[]; total: number }> {
    const rows = await query
      .select<{ label: string; total: string }[]>(this.db.raw(`${label} as label`), this.db.raw('count(*) over () as total'))
      .orderByRaw(`${label} collate "C"`)
      .limit(NAMED_USES);
    return { labels: rows.map((row) => row.label), total: Number(rows[0]?.total ?? 0) };
  }

  /** Runs a write, turning the reserved-name constraint and a lost race on the name into 409s. */
  private async guarded<T>(name: string, write: () => Promise<T>): Promise<T> {
    try {
      return await writeInOrganization(write, (cause) => nameTaken(name, cause));
    } catch (error) {
      const { code, constraint } = error as { code?: string; constraint?: string };
      if (code === CHECK_VIOLATION && constraint === RESERVED_NAMES_CONSTRAINT) {
        throw new ConflictError(`'${name}' is the name of a built-in role; choose another name`, { cause: error });
      }
      throw error;
    }
  }
}

function nameTaken(name: string, cause?: unknown): ConflictError {
  return new ConflictError(`a role named '${name}' already exists in this organization`, cause === undefined ? undefined : { cause });
}

/** Built-in roles are the same in every organization: no organization may change them. */
export function assertMutable(role: RoleRow, verb: 'changed' | 'deleted'): void {
  if (role.organization_id === null) throw new ForbiddenError(`the built-in role '${role.name}' cannot be ${verb}`);
}

function describe(uses: { labels: string[]; total: number }, phrase: string, singular: string, plural: string): string | null {
  if (uses.total === 0) return null;
  const named = uses.total > uses.labels.length ? [...uses.labels, '…'] : uses.labels;
  return `${phrase} ${uses.total} ${uses.total === 1 ? singular : plural} (${named.join(', ')})`;
}
