// An organization's roles over HTTP: the built-in ones (read-only) and its own. Permissions
// follow the grammar of permission-grammar.ts; a role never carries a permission its author
// lacks (no escalation), and a role in use is not deleted (409 naming where it is used).
import type { Knex } from 'knex';
import { z } from 'zod';
import { NotFoundError } from '../base/errors';
import { isUuid } from '../db/uuid';
import type { Actor } from './assertion-verifier';
import { assertNoEscalation } from './escalation-guard';
import { etagOf, pageOf, pageQuery, paginate, requireIfMatch } from './http-semantics';
import { defineOperation, requireUser, type DirectoryDeps, type Operation } from './operation';
import { organizationOf, orgParams } from './organization-operations';
import type { OrganizationRow } from './organization-store';
import { canonicalPermissions, MAX_PERMISSIONS_PER_ROLE, permissionProblem } from './permission-grammar';
import { assertMutable, RoleStore, toRole, type RoleRow } from './role-store';

/**
 * A team's or role's name: it is addressed by name in paths (percent-decoded, case kept), so
 * it holds no `/` or control character, no surrounding spaces, and is not shaped like an id.
 */
export const directoryNameSchema = z
  .string()
  .min(1)
  .max(100)
  .refine((name) => !name.includes('/') && !/\p{Cc}/u.test(name), 'a name holds no "/" and no control character')
  .refine((name) => name.trim() === name, 'a name neither starts nor ends with a space')
  .refine((name) => !isUuid(name), 'a name is not shaped like an id (names and ids share the path)');

export const roleSchema = z.object({
  id: z.string(),
  name: z.string(),
  permissions: z.array(z.string()),
  builtin: z.boolean(),
});

const permissionSchema = z.string().superRefine((value, context) => {
  const problem = permissionProblem(value);
  if (problem !== null) context.addIssue({ code: 'custom', message: problem });
});
/** Stored without duplicates, in code-point order, as the gateway lists them. */
const permissionsSchema = z.array(permissionSchema).max(MAX_PERMISSIONS_PER_ROLE).transform(canonicalPermissions);

const roleParams = z.object({ org: z.string(), role: z.string() });

/**
 * The role a path names in the organization. With `lock`, an organization's role stays
 * locked until the transaction ends; a built-in role is never locked (every membership
 * insert anywhere would wait on it): the store refuses to change it anyway.
 */
async function roleOf(
  db: Knex | Knex.Transaction,
  organization: OrganizationRow,
  ref: string,
  options: { lock?: boolean } = {},
): Promise<RoleRow> {
  const roles = new RoleStore(db);
  let role = await roles.findUsable(organization.id, ref);
  if (role && options.lock && role.organization_id !== null) role = await roles.findUsable(organization.id, role.id, { lock: 'update' });
  if (!role) throw new NotFoundError(`role '${ref}' not found in organization '${organization.slug}'`);
  return role;
}

export const roleOperations = (deps: DirectoryDeps): Operation[] => {
  const event = (
    trx: Knex.Transaction,
    actor: Actor,
    organization: OrganizationRow,
    fields: { action: string; targetId: string; before: unknown; after: unknown },
  ) =>
    deps.events.append(trx, { actor, organizationId: organization.id, organizationSlug: organization.slug, targetType: 'role', ...fields });

  return [
    defineOperation({
      method: 'GET',
      path: '/orgs/:org/roles',
      params: orgParams,
      service: 'organizations',
      summary: 'List the roles usable in an organization: the built-in ones and its own (by name)',
      query: pageQuery,
      response: pageOf(roleSchema),
      status: 200,
      handler: async ({ params, query, actor }) => {
        const organization = await organizationOf(deps.db, actor, params.org);
        const page = await paginate<RoleRow>(new RoleStore(deps.db).list(organization.id), query, {
          columns: [
            { column: 'r.name', field: 'name' },
            { column: 'r.id', field: 'id' },
          ],
        });
        return { body: { items: page.items.map(toRole), next_cursor: page.next_cursor } };
      },
    }),

    defineOperation({
      method: 'POST',
      path: '/orgs/:org/roles',
      params: orgParams,
      service: 'organizations',
      summary: "Create an organization's role; 403 naming the permissions the caller lacks, 409 for a taken or built-in name",
      body: z.strictObject({ name: directoryNameSchema, permissions: permissionsSchema }),
      response: roleSchema,
      status: 201,
      etag: true,
      handler: ({ params, body, actor }) =>
        deps.db.transaction(async (trx) => {
          const organization = await organizationOf(trx, actor, params.org);
          await assertNoEscalation(trx, {
            actorUserId: requireUser(actor),
            organizationId: organization.id,
            permissions: body.permissions,
          });
          const role = toRole(await new RoleStore(trx).create(organization.id, body));
          await event(trx, actor, organization, { action: 'role.create', targetId: role.id, before: null, after: role });
          return { body: role, headers: { location: `/orgs/${organization.slug}/roles/${role.id}` } };
        }),
    }),

    defineOperation({
      method: 'GET',
      path: '/orgs/:org/roles/:role',
      params: roleParams,
      service: 'organizations',
      summary: "Read a role (by name or id): the organization's own, or a built-in one",
      response: roleSchema,
      status: 200,
      etag: true,
      handler: async ({ params, actor }) => {
        const organization = await organizationOf(deps.db, actor, params.org);
        return { body: toRole(await roleOf(deps.db, organization, params.role)) };
      },
    }),

    defineOperation({
      method: 'PATCH',
      path: '/orgs/:org/roles/:role',
      params: roleParams,
      service: 'organizations',
      summary:
        'Rename a role or replace its permissions (built-in roles are immutable: 403); 403 naming added permissions the caller lacks',
      body: z
        .strictObject({ name: directoryNameSchema.optional(), permissions: permissionsSchema.optional() })
        .refine((change) => change.name !== undefined || change.permissions !== undefined, 'give a name, permissions, or both'),
      response: roleSchema,
      status: 200,
      etag: true,
      handler: ({ params, body, actor, headers }) =>
        deps.db.transaction(async (trx) => {
          const organization = await organizationOf(trx, actor, params.org);
          const row = await roleOf(trx, organization, params.role, { lock: true });
          assertMutable(row, 'changed');
          const before = toRole(row);
          requireIfMatch(headers, etagOf(before));
          // Only what the change adds is granted anew; removing a permission is never an escalation.
          const added = (body.permissions ?? []).filter((permission) => !before.permissions.includes(permission));
          await assertNoEscalation(trx, { actorUserId: requireUser(actor), organizationId: organization.id, permissions: added });
          const after = toRole(await new RoleStore(trx).update(row, body));
          await event(trx, actor, organization, { action: 'role.update', targetId: after.id, before, after });
          return { body: after };
        }),
    }),

    defineOperation({
      method: 'DELETE',
      path: '/orgs/:org/roles/:role',
      params: roleParams,
      service: 'organizations',
      summary: "Delete an organization's role that nothing uses (409 naming its members, teams and pending invitations otherwise)",
      response: null,
      status: 204,
      etag: true,
      handler: ({ params, actor, headers }) =>
        deps.db.transaction(async (trx) => {
          const organization = await organizationOf(trx, actor, params.org);
          const row = await roleOf(trx, organization, params.role, { lock: true });
          assertMutable(row, 'deleted');
          const before = toRole(row);
          requireIfMatch(headers, etagOf(before));
          await new RoleStore(trx).delete(row);
          await event(trx, actor, organization, { action: 'role.delete', targetId: row.id, before, after: null });
          return {};
        }),
    }),
  ];
};
