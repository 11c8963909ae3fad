// The organization's project registry: slug and name. Projects are what keeps an
// organization from being deleted (R5, and ON DELETE RESTRICT); deleting the last one frees
// it at once, because the directory triggers evict the gateways' cached facts at commit.
import type { Knex } from 'knex';
import { ConflictError } from '../base/errors';
import { isUuid } from '../db/uuid';
import { writeInOrganization } from './organization-write';

export interface ProjectRow {
  id: string;
  organization_id: string;
  slug: string;
  name: string | null;
}

export interface Project {
  id: string;
  slug: string;
  name: string | null;
}

export function toProject(row: ProjectRow): Project {
  return { id: row.id, slug: row.slug, name: row.name };
}

const COLUMNS = ['id', 'organization_id', 'slug', 'name'] as const;

export class ProjectStore {
  constructor(private readonly db: Knex | Knex.Transaction) {}

  /** The organization's projects, for a paginated list. */
  list(organizationId: string): Knex.QueryBuilder {
    return this.db('projects')
      .where({ organization_id: organizationId })
      .select(...COLUMNS);
  }

  /** The project `ref` names in the organization: by id or by slug, as the gateway resolves it. */
  async find(organizationId: string, ref: string, options: { lock?: boolean } = {}): Promise<ProjectRow | undefined> {
    const query = this.db<ProjectRow>('projects')
      .where({ organization_id: organizationId })
      .where(isUuid(ref) ? { id: ref } : { slug: ref })
      .first(...COLUMNS);
    return options.lock ? query.forUpdate() : query;
  }

  async create(organizationId: string, input: { slug: string; name: string | null }): Promise<ProjectRow> {
    const [row] = await this.guarded(input.slug, () =>
      this.db('projects')
        .insert({ organization_id: organizationId, slug: input.slug, name: input.name })
        .onConflict(['organization_id', 'slug'])
        .ignore()
        .returning<ProjectRow[]>([...COLUMNS]),
    );
    if (!row) throw slugTaken(input.slug);
    return row;
  }

  async update(project: ProjectRow, change: { slug?: string; name?: string | null }): Promise<ProjectRow> {
    const values: Partial<Pick<ProjectRow, 'slug' | 'name'>> = {};
    if (change.slug !== undefined && change.slug !== project.slug) values.slug = change.slug;
    if (change.name !== undefined && change.name !== project.name) values.name = change.name;
    if (Object.keys(values).length === 0) return project;
    const [row] = await this.guarded(change.slug ?? project.slug, () =>
      this.db('projects')
        .where({ id: project.id })
        .update(values)
        .returning<ProjectRow[]>([...COLUMNS]),
    );
    return row!;
  }

  async delete(project: ProjectRow): Promise<void> {
    await this.db('projects').where({ id: project.id }).delete();
  }

  private guarded<T>(slug: string, write: () => Promise<T>): Promise<T> {
    return writeInOrganization(write, (cause) => slugTaken(slug, cause));
  }
}

function slugTaken(slug: string, cause?: unknown): ConflictError {
  return new ConflictError(
    `a project with slug '${slug}' already exists in this organization`,
    cause === undefined ? undefined : { cause },
  );
}
