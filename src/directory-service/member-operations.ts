// An organization's members over HTTP: list and read, change a member's default role (never
// to a role carrying a permission the caller lacks), remove a member, or leave. Every write
// locks the organization's row first, so If-Match and the last-admin rule see settled state.
import type { Knex } from 'knex';
import { z } from 'zod';
import { InputError, NotFoundError } from '../base/errors';
import type { Actor } from './assertion-verifier';
import { assertNoEscalation } from './escalation-guard';
import { etagOf, pageOf, pageQuery, paginate, requireIfMatch } from './http-semantics';
import { MemberStore, toMember, type Member, type MemberRow } from './member-store';
import { defineOperation, requireUser, type DirectoryDeps, type Operation } from './operation';
import { organizationOf, orgParams } from './organization-operations';
import { RoleStore } from './role-store';

export const memberSchema = z.object({
  user_id: z.string(),
  email: z.string().nullable(),
  display_name: z.string().nullable(),
  role: z.string(),
  teams: z.array(z.string()),
  created_at: z.string(),
});

// Members are addressed by users.id; anything else names no member (404, never a database error).
const memberParams = z.object({ org: z.string(), user: z.uuid() });

async function memberOf(db: Knex | Knex.Transaction, organization: { id: string; slug: string }, userId: string): Promise<Member> {
  const member = await new MemberStore(db).get(organization.id, userId);
  if (!member) throw new NotFoundError(`user '${userId}' is not a member of organization '${organization.slug}'`);
  return member;
}

export const memberOperations = (deps: DirectoryDeps): Operation[] => {
  /** Removes `userId` (the caller when leaving), in one transaction with its event. */
  const removal = (actor: Actor, slug: string, userId: string, verb: 'remove' | 'leave', headers: Parameters<typeof requireIfMatch>[0]) =>
    deps.db.transaction(async (trx) => {
      const organization = await organizationOf(trx, actor, slug, { lock: true });
      const before = await memberOf(trx, organization, userId);
      requireIfMatch(headers, etagOf(before));
      await new MemberStore(trx).remove(organization.id, userId, verb);
      await deps.events.append(trx, {
        actor,
        action: verb === 'leave' ? 'member.leave' : 'member.remove',
        organizationId: organization.id,
        organizationSlug: organization.slug,
        targetType: 'member',
        targetId: userId,
        before,
        after: null,
      });
      return {};
    });

  return [
    defineOperation({
      method: 'GET',
      path: '/orgs/:org/members',
      service: 'organizations',
      summary: "List an organization's members (by user id)",
      params: orgParams,
      query: pageQuery,
      response: pageOf(memberSchema),
      status: 200,
      handler: async ({ params, query, actor }) => {
        const organization = await organizationOf(deps.db, actor, params.org);
        const page = await paginate<MemberRow>(new MemberStore(deps.db).list(organization.id), query, {
          columns: [{ column: 'om.user_id', field: 'user_id' }],
        });
        return { body: { items: page.items.map(toMember), next_cursor: page.next_cursor } };
      },
    }),

    // Before `/orgs/:org/members/:user`, which would otherwise take `me` for a user id.
    defineOperation({
      method: 'DELETE',
      path: '/orgs/:org/members/me',
      service: 'organizations',
      summary: 'Leave an organization (its last organization-admin cannot)',
      params: orgParams,
      response: null,
      status: 204,
      etag: true,
      handler: ({ params, actor, headers }) => removal(actor, params.org, requireUser(actor), 'leave', headers),
    }),

    defineOperation({
      method: 'GET',
      path: '/orgs/:org/members/:user',
      service: 'organizations',
      summary: 'Read a member',
      params: memberParams,
      response: memberSchema,
      status: 200,
      etag: true,
      handler: async ({ params, actor }) => ({
        body: await memberOf(deps.db, await organizationOf(deps.db, actor, params.org), params.user),
      }),
    }),

    defineOperation({
      method: 'PATCH',
      path: '/orgs/:org/members/:user',
      service: 'organizations',
      summary: "Change a member's default role (a built-in role or the organization's own, by name)",
      params: memberParams,
      body: z.strictObject({ role: z.string().min(1).max(100) }),
      response: memberSchema,
      status: 200,
      etag: true,
      handler: ({ params, body, actor, headers }) =>
        deps.db.transaction(async (trx) => {
          const organization = await organizationOf(trx, actor, params.org, { lock: true });
          const before = await memberOf(trx, organization, params.user);
          requireIfMatch(headers, etagOf(before));
          // Shared lock: the role's permissions cannot change between the check and the grant.
          const role = await new RoleStore(trx).findUsable(organization.id, body.role, { lock: 'share' });
          if (!role)
            throw new InputError(`role '${body.role}' is neither a built-in role nor one of organization '${organization.slug}'`, 422);
          await assertNoEscalation(trx, { actorUserId: actor.userId, organizationId: organization.id, permissions: role.permissions });
          await new MemberStore(trx).changeRole(organization.id, params.user, role);
          const after = await memberOf(trx, organization, params.user);
          await deps.events.append(trx, {
            actor,
            action: 'member.update',
            organizationId: organization.id,
            organizationSlug: organization.slug,
            targetType: 'member',
            targetId: params.user,
            before,
            after,
          });
          return { body: after };
        }),
    }),

    defineOperation({
      method: 'DELETE',
      path: '/orgs/:org/members/:user',
      service: 'organizations',
      summary: 'Remove a member and their teams of the organization (the last organization-admin stays)',
      params: memberParams,
      response: null,
      status: 204,
      etag: true,
      handler: ({ params, actor, headers }) => removal(actor, params.org, params.user, 'remove', headers),
    }),
  ];
};
