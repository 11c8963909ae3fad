// Invitations over HTTP: an organization invites an e-mail address with a role (never one
// carrying a permission the inviter lacks), lists and revokes its invitations; the verified
// owner of that address accepts once and becomes a member with the invitation's role.
import { z } from 'zod';
import { ForbiddenError, InputError, NotFoundError } from '../base/errors';
import { assertNoEscalation } from './escalation-guard';
import { etagOf, pageOf, pageQuery, paginate, requireIfMatch } from './http-semantics';
import { InvitationStore, toInvitation, type InvitationRow } from './invitation-store';
import { memberSchema } from './member-operations';
import { MemberStore } from './member-store';
import { defineOperation, requireUser, type DirectoryDeps, type Operation } from './operation';
import { organizationOf, organizationSchema, orgParams } from './organization-operations';
import { OrganizationStore, toOrganization } from './organization-store';
import { RoleStore } from './role-store';

export const invitationSchema = z.object({
  id: z.string(),
  email: z.string(),
  role: z.string(),
  state: z.enum(['pending', 'accepted', 'expired', 'revoked']),
  expires_at: z.string(),
  created_at: z.string(),
  accepted_at: z.string().nullable(),
});

const invitationParams = z.object({ org: z.string(), invitation: z.string() });

export const invitationOperations = (deps: DirectoryDeps): Operation[] => [
  defineOperation({
    method: 'GET',
    path: '/orgs/:org/invitations',
    service: 'organizations',
    summary: "List an organization's invitations, in every state",
    params: orgParams,
    query: pageQuery,
    response: pageOf(invitationSchema),
    status: 200,
    handler: async ({ params, query, actor }) => {
      const organization = await organizationOf(deps.db, actor, params.org);
      const page = await paginate<InvitationRow>(new InvitationStore(deps.db).list(organization.id), query, {
        columns: [{ column: 'i.id', field: 'id' }],
      });
      return { body: { items: page.items.map(toInvitation), next_cursor: page.next_cursor } };
    },
  }),

  defineOperation({
    method: 'POST',
    path: '/orgs/:org/invitations',
    service: 'organizations',
    summary: 'Invite an e-mail address with a role (409 while one is pending for it or it is a member)',
    params: orgParams,
    body: z.strictObject({
      email: z.email().max(320),
      role: z.string().min(1).max(100).default('default'),
      expires_in_days: z.number().int().min(1).max(30).default(7),
    }),
    response: invitationSchema,
    status: 201,
    etag: true,
    handler: ({ params, body, actor }) =>
      deps.db.transaction(async (trx) => {
        const organization = await organizationOf(trx, actor, params.org, { lock: true });
        // Shared lock: the role's permissions cannot change between the check and the invitation.
        const role = await new RoleStore(trx).findUsable(organization.id, body.role, { lock: 'share' });
        if (!role)
          throw new InputError(`role '${body.role}' is neither a built-in role nor one of organization '${organization.slug}'`, 422);
        await assertNoEscalation(trx, { actorUserId: actor.userId, organizationId: organization.id, permissions: role.permissions });
        const row = await new InvitationStore(trx).create(organization.id, {
          email: body.email,
          role,
          expiresInDays: body.expires_in_days,
          invitedBy: actor.userId,
        });
        const invitation = toInvitation(row);
        await deps.events.append(trx, {
          actor,
          action: 'invitation.create',
          organizationId: organization.id,
          organizationSlug: organization.slug,
          targetType: 'invitation',
          targetId: row.id,
          before: null,
          after: invitation,
        });
        return { body: invitation, headers: { location: `/orgs/${organization.slug}/invitations/${row.id}` } };
      }),
  }),

  defineOperation({
    method: 'GET',
    path: '/orgs/:org/invitations/:invitation',
    service: 'organizations',
    summary: 'Read an invitation',
    params: invitationParams,
    response: invitationSchema,
    status: 200,
    etag: true,
    handler: async ({ params, actor }) => {
      const organization = await organizationOf(deps.db, actor, params.org);
      const row = await new InvitationStore(deps.db).get(organization.id, params.invitation);
      if (!row) throw new NotFoundError(`invitation '${params.invitation}' not found in organization '${organization.slug}'`);
      return { body: toInvitation(row) };
    },
  }),

  defineOperation({
    method: 'DELETE',
    path: '/orgs/:org/invitations/:invitation',
    service: 'organizations',
    summary: 'Revoke a pending invitation',
    params: invitationParams,
    response: null,
    status: 204,
    etag: true,
    handler: ({ params, actor, headers }) =>
      deps.db.transaction(async (trx) => {
        const organization = await organizationOf(trx, actor, params.org);
        const store = new InvitationStore(trx);
        const before = await store.get(organization.id, params.invitation, { lock: true });
        if (!before) throw new NotFoundError(`invitation '${params.invitation}' not found in organization '${organization.slug}'`);
        requireIfMatch(headers, etagOf(toInvitation(before)));
        const after = await store.revoke(before);
        await deps.events.append(trx, {
          actor,
          action: 'invitation.revoke',
          organizationId: organization.id,
          organizationSlug: organization.slug,
          targetType: 'invitation',
          targetId: before.id,
          before: toInvitation(before),
          after: toInvitation(after),
        });
        return {};
      }),
  }),

  defineOperation({
    method: 'POST',
    path: '/invitations/:invitation/accept',
    service: 'organizations',
    summary: 'Accept an invitation addressed to your verified e-mail address; you become a member with its role',
    params: z.object({ invitation: z.string() }),
    response: z.object({ organization: organizationSchema, member: memberSchema, invitation: invitationSchema }),
    status: 201,
    handler: ({ params, actor }) =>
      deps.db.transaction(async (trx) => {
        const userId = requireUser(actor);
        const store = new InvitationStore(trx);
        const invitee = await store.invitee(userId);
        if (!invitee) throw new ForbiddenError('register first: PUT /users/me');
        const members = new MemberStore(trx);
        const { before, after } = await store.accept(params.invitation, invitee, members);
        const organization = toOrganization((await new OrganizationStore(trx).findBySlug(after.organization_slug))!);
        const member = (await members.get(organization.id, userId))!;
        await deps.events.append(trx, {
          actor,
          action: 'invitation.accept',
          organizationId: organization.id,
          organizationSlug: organization.slug,
          targetType: 'invitation',
          targetId: after.id,
          before: toInvitation(before),
          after: { invitation: toInvitation(after), member },
        });
        return {
          body: { organization, member, invitation: toInvitation(after) },
          headers: { location: `/orgs/${organization.slug}/members/${userId}` },
        };
      }),
  }),
];
