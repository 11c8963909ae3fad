// An organization's project registry over HTTP (the gateway's `projects` service). Deleting
// the last project makes the organization deletable at once: the directory triggers evict
// the gateways' cached facts when the deletion commits.
import type { Knex } from 'knex';
import { z } from 'zod';
import { NotFoundError } from '../base/errors';
import { isUuid } from '../db/uuid';
import type { Actor } from './assertion-verifier';
import { etagOf, pageOf, pageQuery, paginate, requireIfMatch } from './http-semantics';
import { defineOperation, type DirectoryDeps, type Operation } from './operation';
import { organizationOf, orgParams } from './organization-operations';
import type { OrganizationRow } from './organization-store';
import { ProjectStore, toProject, type ProjectRow } from './project-store';

export const projectSchema = z.object({
  id: z.string(),
  slug: z.string(),
  name: z.string().nullable(),
});

/** Projects are addressed by slug or id in paths, so a slug is never shaped like an id. */
const slugSchema = z
  .string()
  .regex(/^[a-z0-9-]{2,63}$/, 'a slug is 2 to 63 lower-case letters, digits and hyphens')
  .refine((slug) => !isUuid(slug), 'a slug is not shaped like an id (slugs and ids share the path)');
const nameSchema = z.string().trim().min(1).max(200);

const projectParams = z.object({ org: z.string(), project: z.string() });

async function projectOf(
  db: Knex | Knex.Transaction,
  organization: OrganizationRow,
  ref: string,
  options: { lock?: boolean } = {},
): Promise<ProjectRow> {
  const project = await new ProjectStore(db).find(organization.id, ref, options);
  if (!project) throw new NotFoundError(`project '${ref}' not found in organization '${organization.slug}'`);
  return project;
}

export const projectOperations = (deps: DirectoryDeps): Operation[] => {
  const event = (
    trx: Knex.Transaction,
    actor: Actor,
    organization: OrganizationRow,
    fields: { action: string; targetId: string; before: unknown; after: unknown },
  ) =>
    deps.events.append(trx, {
      actor,
      organizationId: organization.id,
      organizationSlug: organization.slug,
      targetType: 'project',
      ...fields,
    });

  return [
    defineOperation({
      method: 'GET',
      path: '/orgs/:org/projects',
      params: orgParams,
      service: 'projects',
      summary: "List an organization's projects (by slug)",
      query: pageQuery,
      response: pageOf(projectSchema),
      status: 200,
      handler: async ({ params, query, actor }) => {
        const organization = await organizationOf(deps.db, actor, params.org);
        const page = await paginate<ProjectRow>(new ProjectStore(deps.db).list(organization.id), query, {
          columns: [
            { column: 'slug', field: 'slug' },
            { column: 'id', field: 'id' },
          ],
        });
        return { body: { items: page.items.map(toProject), next_cursor: page.next_cursor } };
      },
    }),

    defineOperation({
      method: 'POST',
      path: '/orgs/:org/projects',
      params: orgParams,
      service: 'projects',
      summary: 'Register a project (slugs are unique in the organization; the name defaults to the slug)',
      body: z.strictObject({ slug: slugSchema, name: nameSchema.optional() }),
      response: projectSchema,
      status: 201,
      etag: true,
      handler: ({ params, body, actor }) =>
        deps.db.transaction(async (trx) => {
          const organization = await organizationOf(trx, actor, params.org);
          const project = toProject(await new ProjectStore(trx).create(organization.id, { slug: body.slug, name: body.name ?? body.slug }));
          await event(trx, actor, organization, { action: 'project.create', targetId: project.id, before: null, after: project });
          return { body: project, headers: { location: `/orgs/${organization.slug}/projects/${project.slug}` } };
        }),
    }),

    defineOperation({
      method: 'GET',
      path: '/orgs/:org/projects/:project',
      params: projectParams,
      service: 'projects',
      summary: 'Read a project (by slug or id)',
      response: projectSchema,
      status: 200,
      etag: true,
      handler: async ({ params, actor }) => {
        const organization = await organizationOf(deps.db, actor, params.org);
        return { body: toProject(await projectOf(deps.db, organization, params.project)) };
      },
    }),

    defineOperation({
      method: 'PATCH',
      path: '/orgs/:org/projects/:project',
      params: projectParams,
      service: 'projects',
      summary: 'Rename a project or change its slug',
      body: z
        .strictObject({ slug: slugSchema.optional(), name: nameSchema.optional() })
        .refine((change) => change.slug !== undefined || change.name !== undefined, 'give a slug, a name, or both'),
      response: projectSchema,
      status: 200,
      etag: true,
      handler: ({ params, body, actor, headers }) =>
        deps.db.transaction(async (trx) => {
          const organization = await organizationOf(trx, actor, params.org);
          const row = await projectOf(trx, organization, params.project, { lock: true });
          const before = toProject(row);
          requireIfMatch(headers, etagOf(before));
          const after = toProject(await new ProjectStore(trx).update(row, body));
          await event(trx, actor, organization, { action: 'project.update', targetId: after.id, before, after });
          return { body: after };
        }),
    }),

    defineOperation({
      method: 'DELETE',
      path: '/orgs/:org/projects/:project',
      params: projectParams,
      service: 'projects',
      summary: 'Delete a project (the last one gone, the organization may be deleted)',
      response: null,
      status: 204,
      etag: true,
      handler: ({ params, actor, headers }) =>
        deps.db.transaction(async (trx) => {
          const organization = await organizationOf(trx, actor, params.org);
          const row = await projectOf(trx, organization, params.project, { lock: true });
          const before = toProject(row);
          requireIfMatch(headers, etagOf(before));
          await new ProjectStore(trx).delete(row);
          await event(trx, actor, organization, { action: 'project.delete', targetId: row.id, before, after: null });
          return {};
        }),
    }),
  ];
};
