// Organizations over HTTP: the caller's list, creation (the creator becomes its first
// organization-admin), rename, and deletion once no project remains (R5, answered by the
// gateway's policy first and by the database's RESTRICT if a project appears meanwhile).
import type { Knex } from 'knex';
import { z } from 'zod';
import { ConflictError, ForbiddenError, NotFoundError } from '../base/errors';
import type { Actor } from './assertion-verifier';
import { etagOf, pageOf, pageQuery, paginate, requireIfMatch } from './http-semantics';
import { defineOperation, requireUser, type DirectoryDeps, type Operation } from './operation';
import { OrganizationStore, toOrganization, type OrganizationRow } from './organization-store';

export const organizationSchema = z.object({
  id: z.string(),
  slug: z.string(),
  name: z.string(),
  created_at: z.string(),
});

const SLUG = /^[a-z0-9-]{2,63}$/;
const slugSchema = z.string().regex(SLUG, 'a slug is 2 to 63 lower-case letters, digits and hyphens');
const nameSchema = z.string().trim().min(1).max(200);
export const orgParams = z.object({ org: z.string() });

/**
 * The organization an org-scoped path names, read in `db` (locked with `lock`). The path's
 * slug must be the organization the gateway judged (the assertion's `org` claim), so an
 * assertion issued for one organization is never replayed against another.
 */
export async function organizationOf(
  db: Knex | Knex.Transaction,
  actor: Actor,
  slug: string,
  options: { lock?: boolean } = {},
): Promise<OrganizationRow> {
  if (actor.org !== slug) {
    throw new ForbiddenError(
      `the gateway's assertion is for ${actor.org === null ? 'no organization' : `organization '${actor.org}'`}, not '${slug}'`,
    );
  }
  const organization = await new OrganizationStore(db).findBySlug(slug, options);
  if (!organization) throw new NotFoundError(`organization '${slug}' not found`);
  return organization;
}

export const organizationOperations = (deps: DirectoryDeps): Operation[] => [
  defineOperation({
    method: 'GET',
    path: '/orgs',
    service: 'organizations',
    summary: "List the caller's organizations (by slug)",
    query: pageQuery,
    response: pageOf(organizationSchema),
    status: 200,
    handler: async ({ query, actor }) => {
      const page = await paginate<OrganizationRow>(new OrganizationStore(deps.db).listForUser(requireUser(actor)), query, {
        columns: [{ column: 'o.slug', field: 'slug' }],
      });
      return { body: { items: page.items.map(toOrganization), next_cursor: page.next_cursor } };
    },
  }),

  defineOperation({
    method: 'POST',
    path: '/orgs',
    service: 'organizations',
    summary: 'Create an organization; the caller becomes its organization-admin',
    body: z.strictObject({ slug: slugSchema, name: nameSchema }),
    response: organizationSchema,
    status: 201,
    etag: true,
    handler: ({ body, actor }) =>
      deps.db.transaction(async (trx) => {
        const row = await new OrganizationStore(trx).create(body, requireUser(actor));
        if (!row) throw new ConflictError(`the slug '${body.slug}' is taken: choose another`);
        const organization = toOrganization(row);
        await deps.events.append(trx, {
          actor,
          action: 'organization.create',
          organizationId: row.id,
          organizationSlug: row.slug,
          targetType: 'organization',
          targetId: row.id,
          before: null,
          after: organization,
        });
        return { body: organization, headers: { location: `/orgs/${row.slug}` } };
      }),
  }),

  defineOperation({
    method: 'GET',
    path: '/orgs/:org',
    service: 'organizations',
    summary: 'Read an organization',
    params: orgParams,
    response: organizationSchema,
    status: 200,
    etag: true,
    handler: async ({ params, actor }) => ({ body: toOrganization(await organizationOf(deps.db, actor, params.org)) }),
  }),

  defineOperation({
    method: 'PATCH',
    path: '/orgs/:org',
    service: 'organizations',
    summary: 'Rename an organization (its slug never changes)',
    params: orgParams,
    body: z.strictObject({ name: nameSchema }),
    response: organizationSchema,
    status: 200,
    etag: true,
    handler: ({ params, body, actor, headers }) =>
      deps.db.transaction(async (trx) => {
        const before = toOrganization(await organizationOf(trx, actor, params.org, { lock: true }));
        requireIfMatch(headers, etagOf(before));
        const after = toOrganization((await new OrganizationStore(trx).rename(before.id, body.name))!);
        await deps.events.append(trx, {
          actor,
          action: 'organization.update',
          organizationId: after.id,
          organizationSlug: after.slug,
          targetType: 'organization',
          targetId: after.id,
          before,
          after,
        });
        return { body: after };
      }),
  }),

  defineOperation({
    method: 'DELETE',
    path: '/orgs/:org',
    service: 'organizations',
    summary: 'Delete an organization that has no projects left (409 naming them otherwise)',
    params: orgParams,
    response: null,
    status: 204,
    etag: true,
    handler: ({ params, actor, headers }) =>
      deps.db.transaction(async (trx) => {
        const row = await organizationOf(trx, actor, params.org, { lock: true });
        const before = toOrganization(row);
        requireIfMatch(headers, etagOf(before));
        await new OrganizationStore(trx).delete(row);
        await deps.events.append(trx, {
          actor,
          action: 'organization.delete',
          organizationId: row.id,
          organizationSlug: row.slug,
          targetType: 'organization',
          targetId: row.id,
          before,
          after: null,
        });
        return {};
      }),
  }),
];
