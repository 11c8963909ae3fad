// Organizations as the directory service writes them: created with their first admin in one
// transaction, renamed, and deleted only while no project remains (the database's RESTRICT
// has the last word and is answered like the gateway's R5 denial).
import type { Knex } from 'knex';
import { ConflictError } from '../base/errors';
import type { ProjectRow } from './project-store';

// A type, not an interface: paginate() takes rows as records.
export type OrganizationRow = {
  id: string;
  slug: string;
  name: string;
  created_at: Date;
};

export interface Organization {
  id: string;
  slug: string;
  name: string;
  created_at: string;
}

export function toOrganization(row: OrganizationRow): Organization {
  return { id: row.id, slug: row.slug, name: row.name, created_at: row.created_at.toISOString() };
}

// `on delete restrict` raises restrict_violation (23001); a NO ACTION key would raise
// foreign_key_violation (23503) at the same point. Either means "projects remain".
const REFERENCED_ERRORS = new Set(['23001', '23503']);
/** How many project slugs a refused deletion names, as the gateway's facts loader does. */
const NAMED_PROJECTS = 5;

export class OrganizationStore {
  constructor(private readonly db: Knex | Knex.Transaction) {}

  /**
   * `lock` holds the row until the transaction ends. Every write that can take away an
   * organization-admin takes this lock before counting them (MemberStore), and the writes of
   * an organization's own row take it before checking If-Match.
   */
  async findBySlug(slug: string, options: { lock?: boolean } = {}): Promise<OrganizationRow | undefined> {
    const query = this.db<OrganizationRow>('organizations').where({ slug }).first('id', 'slug', 'name', 'created_at');
    return options.lock ? query.forUpdate() : query;
  }

  /** The organizations `userId` belongs to, for a paginated list. */
  listForUser(userId: string): Knex.QueryBuilder {
    return this.db('organizations as o')
      .join('organization_members as om', 'om.organization_id', 'o.id')
      .where('om.user_id', userId)
      .select('o.id', 'o.slug', 'o.name', 'o.created_at');
  }

  /**
   * Creates the organization and makes `creatorId` its organization-admin; undefined when
   * the slug is taken. Must run in a transaction: the two rows exist together or not at all.
   */
  async create(input: { slug: string; name: string }, creatorId: string): Promise<OrganizationRow | undefined> {
    const [row] = await this.db('organizations')
      .insert({ slug: input.slug, name: input.name })
      .onConflict('slug')
      .ignore()
      .returning<OrganizationRow[]>(['id', 'slug', 'name', 'created_at']);
    if (!row) return undefined;
    await this.db('organization_members').insert({
      organization_id: row.id,
      user_id: creatorId,
      role_id: this.db('roles').whereNull('organization_id').where({ name: 'organization-admin' }).select('id'),
    });
    return row;
  }

  async rename(organizationId: string, name: string): Promise<OrganizationRow | undefined> {
    const [row] = await this.db('organizations')
      .where({ id: organizationId })
      .update({ name })
      .returning<OrganizationRow[]>(['id', 'slug', 'name', 'created_at']);
    return row;
  }

  /**
   * Deletes the organization; its members, teams, roles and invitations go with it. While a
   * project remains, PostgreSQL refuses (RESTRICT): that refusal becomes the same 409 the
   * gateway gives (R5), naming the projects. The delete runs in a savepoint so the caller's
   * transaction can still read them afterwards.
   */
  async delete(organization: { id: string; slug: string }): Promise<void> {
    try {
      await this.db.transaction((savepoint) => savepoint('organizations').where({ id: organization.id }).delete());
    } catch (error) {
      if (!REFERENCED_ERRORS.has((error as { code?: string }).code ?? '')) throw error;
      throw new ConflictError(await this.remainingProjectsReason(organization), { cause: error });
    }
  }

  private async remainingProjectsReason(organization: { id: string; slug: string }): Promise<string> {
    const counted = await this.db('projects')
      .where({ organization_id: organization.id })
      .count<{ count: string }[]>({ count: '*' })
      .first();
    const slugs = await this.db<ProjectRow>('projects')
      .where({ organization_id: organization.id })
      .orderByRaw('slug collate "C"')
      .limit(NAMED_PROJECTS)
      .pluck('slug');
    const n = Number(counted?.count ?? 0);
    const names = n > slugs.length ? [...slugs, '…'] : slugs;
    return `organization '${organization.slug}' still has ${n} ${n === 1 ? 'project' : 'projects'} (${names.join(', ')}); delete them first`;
  }
}
