// An organization's teams over HTTP: create, rename, delete; their members (only the
// organization's own) and the roles they carry (only built-in ones or the organization's).
// Attaching a role, or joining someone to a team, never grants a permission the caller lacks.
import type { IncomingHttpHeaders } from 'node:http';
import type { Knex } from 'knex';
import { z } from 'zod';
import { InputError, NotFoundError } from '../base/errors';
import type { Actor } from './assertion-verifier';
import { assertNoEscalation } from './escalation-guard';
import { etagOf, pageOf, pageQuery, paginate, requireIfMatch } from './http-semantics';
import { defineOperation, requireUser, type DirectoryDeps, type Operation } from './operation';
import { organizationOf, orgParams } from './organization-operations';
import type { OrganizationRow } from './organization-store';
import { directoryNameSchema, roleSchema } from './role-operations';
import { RoleStore, toRole, type RoleRow } from './role-store';
import { TeamStore, type Team, type TeamMember, type TeamRow } from './team-store';

export const teamSchema = z.object({
  id: z.string(),
  name: z.string(),
  roles: z.array(z.string()),
  member_count: z.number().int(),
});

export const teamMemberSchema = z.object({
  user_id: z.string(),
  email: z.string().nullable(),
  display_name: z.string().nullable(),
});

const teamParams = z.object({ org: z.string(), team: z.string() });
const teamMemberParams = z.object({ org: z.string(), team: z.string(), user: z.string() });
const teamRoleParams = z.object({ org: z.string(), team: z.string(), role: z.string() });

async function teamOf(
  db: Knex | Knex.Transaction,
  organization: OrganizationRow,
  ref: string,
  options: { lock?: boolean } = {},
): Promise<TeamRow> {
  const team = await new TeamStore(db).find(organization.id, ref, options);
  if (!team) throw new NotFoundError(`team '${ref}' not found in organization '${organization.slug}'`);
  return team;
}

/** If-Match for a PUT that may create: with nothing there yet, no ETag can match (RFC 9110 §13.1.1). */
function requireIfMatchOn(headers: IncomingHttpHeaders, current: unknown): void {
  if (current !== undefined) {
    requireIfMatch(headers, etagOf(current));
    return;
  }
  if (headers['if-match'] !== undefined)
    throw new InputError(`If-Match ${headers['if-match']} cannot match: the resource does not exist yet`, 412);
}

export const teamOperations = (deps: DirectoryDeps): Operation[] => {
  const event = (
    trx: Knex.Transaction,
    actor: Actor,
    organization: OrganizationRow,
    fields: { action: string; targetType: string; targetId: string; before: unknown; after: unknown },
  ) => deps.events.append(trx, { actor, organizationId: organization.id, organizationSlug: organization.slug, ...fields });

  return [
    defineOperation({
      method: 'GET',
      path: '/orgs/:org/teams',
      params: orgParams,
      service: 'organizations',
      summary: "List an organization's teams (by name)",
      query: pageQuery,
      response: pageOf(teamSchema),
      status: 200,
      handler: async ({ params, query, actor }) => {
        const organization = await organizationOf(deps.db, actor, params.org);
        const page = await paginate<Team>(new TeamStore(deps.db).list(organization.id), query, {
          columns: [
            { column: 't.name', field: 'name' },
            { column: 't.id', field: 'id' },
          ],
        });
        return { body: page };
      },
    }),

    defineOperation({
      method: 'POST',
      path: '/orgs/:org/teams',
      params: orgParams,
      service: 'organizations',
      summary: 'Create a team (names are unique in the organization)',
      body: z.strictObject({ name: directoryNameSchema }),
      response: teamSchema,
      status: 201,
      etag: true,
      handler: ({ params, body, actor }) =>
        deps.db.transaction(async (trx) => {
          const organization = await organizationOf(trx, actor, params.org);
          const teams = new TeamStore(trx);
          const team = await teams.representation((await teams.create(organization.id, body.name)).id);
          await event(trx, actor, organization, {
            action: 'team.create',
            targetType: 'team',
            targetId: team.id,
            before: null,
            after: team,
          });
          return { body: team, headers: { location: `/orgs/${organization.slug}/teams/${team.id}` } };
        }),
    }),

    defineOperation({
      method: 'GET',
      path: '/orgs/:org/teams/:team',
      params: teamParams,
      service: 'organizations',
      summary: 'Read a team (by name or id)',
      response: teamSchema,
      status: 200,
      etag: true,
      handler: async ({ params, actor }) => {
        const organization = await organizationOf(deps.db, actor, params.org);
        return { body: await new TeamStore(deps.db).representation((await teamOf(deps.db, organization, params.team)).id) };
      },
    }),

    defineOperation({
      method: 'PATCH',
      path: '/orgs/:org/teams/:team',
      params: teamParams,
      service: 'organizations',
      summary: 'Rename a team',
      body: z.strictObject({ name: directoryNameSchema }),
      response: teamSchema,
      status: 200,
      etag: true,
      handler: ({ params, body, actor, headers }) =>
        deps.db.transaction(async (trx) => {
          const organization = await organizationOf(trx, actor, params.org);
          const teams = new TeamStore(trx);
          const row = await teamOf(trx, organization, params.team, { lock: true });
          const before = await teams.representation(row.id);
          requireIfMatch(headers, etagOf(before));
          await teams.rename(row, body.name);
          const after = await teams.representation(row.id);
          await event(trx, actor, organization, { action: 'team.update', targetType: 'team', targetId: row.id, before, after });
          return { body: after };
        }),
    }),

    defineOperation({
      method: 'DELETE',
      path: '/orgs/:org/teams/:team',
      params: teamParams,
      service: 'organizations',
      summary: 'Delete a team with its memberships and role attachments',
      response: null,
      status: 204,
      etag: true,
      handler: ({ params, actor, headers }) =>
        deps.db.transaction(async (trx) => {
          const organization = await organizationOf(trx, actor, params.org);
          const teams = new TeamStore(trx);
          const row = await teamOf(trx, organization, params.team, { lock: true });
          const before = await teams.representation(row.id);
          requireIfMatch(headers, etagOf(before));
          await teams.delete(row);
          await event(trx, actor, organization, { action: 'team.delete', targetType: 'team', targetId: row.id, before, after: null });
          return {};
        }),
    }),

    defineOperation({
      method: 'GET',
      path: '/orgs/:org/teams/:team/members',
      params: teamParams,
      service: 'organizations',
      summary: "List a team's members (by user id)",
      query: pageQuery,
      response: pageOf(teamMemberSchema),
      status: 200,
      handler: async ({ params, query, actor }) => {
        const organization = await organizationOf(deps.db, actor, params.org);
        const team = await teamOf(deps.db, organization, params.team);
        return {
          body: await paginate<TeamMember>(new TeamStore(deps.db).members(team), query, {
            columns: [{ column: 'tm.user_id', field: 'user_id' }],
          }),
        };
      },
    }),

    defineOperation({
      method: 'GET',
      path: '/orgs/:org/teams/:team/members/:user',
      params: teamMemberParams,
      service: 'organizations',
      summary: "Read one of a team's members (its ETag is what If-Match compares on PUT and DELETE)",
      response: teamMemberSchema,
      status: 200,
      etag: true,
      handler: async ({ params, actor }) => {
        const organization = await organizationOf(deps.db, actor, params.org);
        const team = await teamOf(deps.db, organization, params.team);
        const member = await new TeamStore(deps.db).member(team, params.user);
        if (!member) throw new NotFoundError(`user '${params.user}' is not a member of team '${team.name}'`);
        return { body: member };
      },
    }),

    defineOperation({
      method: 'PUT',
      path: '/orgs/:org/teams/:team/members/:user',
      params: teamMemberParams,
      service: 'organizations',
      summary:
        "Add a member of the organization to a team (201; 200 if already in it); 403 if the team's roles carry a permission the caller lacks",
      response: teamMemberSchema,
      status: 200,
      etag: true,
      handler: ({ params, actor, headers }) =>
        deps.db.transaction(async (trx) => {
          const organization = await organizationOf(trx, actor, params.org);
          const teams = new TeamStore(trx);
          const team = await teamOf(trx, organization, params.team, { lock: true });
          const before = await teams.member(team, params.user);
          requireIfMatchOn(headers, before);
          if (before) return { body: before };
          await teams.assertJoinable(team, params.user);
          // Joining a team grants its roles: only what the caller holds may be handed out
          // (checked before the insert, or a caller joining a team would hold its roles already).
          const granted = (await teams.roles(team)) as RoleRow[];
          await assertNoEscalation(trx, {
            actorUserId: requireUser(actor),
            organizationId: organization.id,
            permissions: granted.flatMap((role) => role.permissions),
          });
          await teams.addMember(team, params.user);
          const after = (await teams.member(team, params.user))!;
          await event(trx, actor, organization, {
            action: 'team_member.add',
            targetType: 'team_member',
            targetId: `${team.id}/${after.user_id}`,
            before: null,
            after: { team: team.name, ...after },
          });
          return { status: 201, body: after };
        }),
    }),

    defineOperation({
      method: 'DELETE',
      path: '/orgs/:org/teams/:team/members/:user',
      params: teamMemberParams,
      service: 'organizations',
      summary: 'Remove a user from a team',
      response: null,
      status: 204,
      etag: true,
      handler: ({ params, actor, headers }) =>
        deps.db.transaction(async (trx) => {
          const organization = await organizationOf(trx, actor, params.org);
          const teams = new TeamStore(trx);
          const team = await teamOf(trx, organization, params.team, { lock: true });
          const before = await teams.member(team, params.user);
          if (!before) throw new NotFoundError(`user '${params.user}' is not a member of team '${team.name}'`);
          requireIfMatch(headers, etagOf(before));
          await teams.removeMember(team, before.user_id);
          await event(trx, actor, organization, {
            action: 'team_member.remove',
            targetType: 'team_member',
            targetId: `${team.id}/${before.user_id}`,
            before: { team: team.name, ...before },
            after: null,
          });
          return {};
        }),
    }),

    defineOperation({
      method: 'GET',
      path: '/orgs/:org/teams/:team/roles',
      params: teamParams,
      service: 'organizations',
      summary: 'List the roles a team carries (those that count: built-in or the organization’s)',
      query: pageQuery,
      response: pageOf(roleSchema),
      status: 200,
      handler: async ({ params, query, actor }) => {
        const organization = await organizationOf(deps.db, actor, params.org);
        const team = await teamOf(deps.db, organization, params.team);
        const page = await paginate<RoleRow>(new TeamStore(deps.db).roles(team), query, {
          columns: [
            { column: 'r.name', field: 'name' },
            { column: 'r.id', field: 'id' },
          ],
        });
        return { body: { items: page.items.map(toRole), next_cursor: page.next_cursor } };
      },
    }),

    defineOperation({
      method: 'PUT',
      path: '/orgs/:org/teams/:team/roles/:role',
      params: teamRoleParams,
      service: 'organizations',
      summary:
        "Attach a built-in or the organization's role to a team (201; 200 if attached); 403 if it carries a permission the caller lacks",
      response: roleSchema,
      status: 200,
      etag: true,
      handler: ({ params, actor, headers }) =>
        deps.db.transaction(async (trx) => {
          const organization = await organizationOf(trx, actor, params.org);
          const teams = new TeamStore(trx);
          const team = await teamOf(trx, organization, params.team, { lock: true });
          const role = await new RoleStore(trx).findUsable(organization.id, params.role, { lock: 'share' });
          if (!role) throw new NotFoundError(`role '${params.role}' not found in organization '${organization.slug}'`);
          const attached = ((await teams.roles(team)) as RoleRow[]).some((row) => row.id === role.id);
          requireIfMatchOn(headers, attached ? toRole(role) : undefined);
          if (attached) return { body: toRole(role) };
          await assertNoEscalation(trx, {
            actorUserId: requireUser(actor),
            organizationId: organization.id,
            permissions: role.permissions,
          });
          await teams.attachRole(team, role);
          await event(trx, actor, organization, {
            action: 'team_role.attach',
            targetType: 'team_role',
            targetId: `${team.id}/${role.id}`,
            before: null,
            after: { team: team.name, role: role.name, permissions: toRole(role).permissions },
          });
          return { status: 201, body: toRole(role) };
        }),
    }),

    defineOperation({
      method: 'DELETE',
      path: '/orgs/:org/teams/:team/roles/:role',
      params: teamRoleParams,
      service: 'organizations',
      summary: 'Detach a role from a team',
      response: null,
      status: 204,
      etag: true,
      handler: ({ params, actor, headers }) =>
        deps.db.transaction(async (trx) => {
          const organization = await organizationOf(trx, actor, params.org);
          const teams = new TeamStore(trx);
          const team = await teamOf(trx, organization, params.team, { lock: true });
          const role = await new RoleStore(trx).findUsable(organization.id, params.role);
          const attached = role && ((await teams.roles(team)) as RoleRow[]).some((row) => row.id === role.id);
          if (!role || !attached) throw new NotFoundError(`team '${team.name}' does not carry role '${params.role}'`);
          requireIfMatch(headers, etagOf(toRole(role)));
          await teams.detachRole(team, role);
          await event(trx, actor, organization, {
            action: 'team_role.detach',
            targetType: 'team_role',
            targetId: `${team.id}/${role.id}`,
            before: { team: team.name, role: role.name, permissions: toRole(role).permissions },
            after: null,
          });
          return {};
        }),
    }),
  ];
};
