// `portcullis directory import|export`: the whole directory as one YAML document (README "The
// directory service"), so operators bootstrap without SQL. Import is idempotent: it creates
// what is missing and updates what differs, never deletes, and says what it changed; a second
// run changes nothing. Export writes the same format, so export -> import round-trips.
import type { Knex } from 'knex';
import { z } from 'zod';
import { isUuid } from '../db/uuid';
import { InputError } from '../base/errors';
import { DirectoryEvents } from './directory-events';
import type { OrganizationRow } from './organization-store';
import { permissionProblem } from './permission-grammar';
import type { ProjectRow } from './project-store';
import { directoryNameSchema } from './role-operations';
import type { RoleRow } from './role-store';
import type { TeamRow } from './team-store';
import type { UserRow } from './user-store';

// The API's rules: names and slugs share paths with ids, so none is shaped like one.
const slug = z
  .string()
  .regex(/^[a-z0-9-]{2,63}$/, 'must be lower-case [a-z0-9-], 2 to 63 characters')
  .refine((value) => !isUuid(value), 'must not be shaped like an id');
const subject = z.string().min(1);

const organizationDocument = z.strictObject({
  slug,
  name: z.string().min(1),
  /** Each member's subject and role (a built-in role or one of `roles`; default `default`). */
  members: z.array(z.strictObject({ user: subject, role: z.string().min(1).default('default') })).default([]),
  roles: z
    .array(
      z.strictObject({
        name: directoryNameSchema,
        permissions: z.array(
          z.string().refine((value) => permissionProblem(value) === null, { error: (issue) => permissionProblem(String(issue.input))! }),
        ),
      }),
    )
    .default([]),
  /** Team members must be members of the organization; team roles are built-in or the organization's. */
  teams: z
    .array(
      z.strictObject({ name: directoryNameSchema, members: z.array(subject).default([]), roles: z.array(z.string().min(1)).default([]) }),
    )
    .default([]),
  projects: z.array(z.strictObject({ slug, name: z.string().min(1).optional() })).default([]),
  credentials: z.array(z.strictObject({ slug: z.string().min(1), name: z.string().min(1).optional() })).default([]),
  /** Pending invitations, by e-mail (one pending invitation per address). */
  invitations: z.array(z.strictObject({ email: z.email(), role: z.string().min(1).default('default') })).default([]),
});

export const directoryDocument = z.strictObject({
  users: z
    .array(
      z.strictObject({
        subject,
        email: z.email().optional(),
        email_verified: z.boolean().optional(),
        display_name: z.string().min(1).optional(),
      }),
    )
    .default([]),
  organizations: z.array(organizationDocument).default([]),
});
export type DirectoryDocument = z.input<typeof directoryDocument>;

// The rows this module reads from the tables that have no store of their own here.
type IdRow = { id: string };
type MembershipRow = { organization_id: string; user_id: string; role_id: string };
type TeamMemberRow = { team_id: string; user_id: string };
type TeamRoleRow = { team_id: string; role_id: string };
/** Projects and credentials: named by a slug in their organization. */
type SlugRow = Pick<ProjectRow, 'id' | 'organization_id' | 'slug' | 'name'>;
type InvitationTableRow = { id: string; organization_id: string; email: string; role_id: string | null };

/** What an import changed, per kind: `created`, `updated`. */
export type ImportSummary = Record<string, { created: number; updated: number }>;

export function describeSummary(summary: ImportSummary): string {
  const parts = Object.entries(summary)
    .filter(([, counts]) => counts.created + counts.updated > 0)
    .map(([kind, counts]) =>
      [counts.created ? `${counts.created} ${kind} created` : '', counts.updated ? `${counts.updated} ${kind} updated` : '']
        .filter(Boolean)
        .join(', '),
    );
  return parts.length === 0 ? 'nothing changed: the directory already holds everything in the file' : parts.join('; ');
}

/** Validates `document` (errors name the path in the file) and applies it in one transaction. */
export async function importDirectory(
  db: Knex,
  document: unknown,
  events: DirectoryEvents = new DirectoryEvents(),
): Promise<ImportSummary> {
  const parsed = directoryDocument.safeParse(document ?? {});
  if (!parsed.success) {
    throw new InputError(
      `invalid directory file: ${parsed.error.issues.map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`).join('; ')}`,
    );
  }
  const input = parsed.data;
  const summary: ImportSummary = {};
  const count = (kind: string, what: 'created' | 'updated') => ((summary[kind] ??= { created: 0, updated: 0 })[what] += 1);

  await db.transaction(async (trx) => {
    const record = (
      action: string,
      target: { type: string; id: string | null },
      org: { id: string; slug: string } | null,
      before: unknown,
      after: unknown,
    ) =>
      events.append(trx, {
        actor: null,
        action,
        organizationId: org?.id ?? null,
        organizationSlug: org?.slug ?? null,
        targetType: target.type,
        targetId: target.id,
        before,
        after,
      });

    const userIds = new Map<string, string>();
    for (const user of input.users) {
      const existing = await trx<UserRow>('users').where({ subject: user.subject }).first('id', 'email', 'email_verified', 'display_name');
      const wanted = {
        ...(user.email !== undefined ? { email: user.email } : {}),
        ...(user.email_verified !== undefined ? { email_verified: user.email_verified } : {}),
        ...(user.display_name !== undefined ? { display_name: user.display_name } : {}),
      };
      if (!existing) {
        const [row] = await trx('users')
          .insert({ subject: user.subject, ...wanted })
          .returning<IdRow[]>('id');
        userIds.set(user.subject, row!.id);
        count('users', 'created');
        await record('user.import', { type: 'user', id: row!.id }, null, null, { subject: user.subject, ...wanted });
        continue;
      }
      userIds.set(user.subject, existing.id);
      const changed = Object.fromEntries(Object.entries(wanted).filter(([key, value]) => existing[key as keyof typeof wanted] !== value));
      if (Object.keys(changed).length === 0) continue;
      await trx('users')
        .where({ id: existing.id })
        .update({ ...changed, updated_at: trx.fn.now() });
      count('users', 'updated');
      await record('user.import', { type: 'user', id: existing.id }, null, pick(existing, Object.keys(changed)), changed);
    }
    const userId = async (subjectOf: string, where: string) => {
      const known = userIds.get(subjectOf) ?? (await trx<UserRow>('users').where({ subject: subjectOf }).first('id'))?.id;
      if (!known) throw new InputError(`${where}: no user with subject ${subjectOf} (list it under users)`);
      userIds.set(subjectOf, known);
      return known;
    };

    const builtIn = new Map<string, string>(
      (await trx<RoleRow>('roles').whereNull('organization_id').select('id', 'name')).map((row) => [row.name, row.id]),
    );

    for (const [index, organization] of input.organizations.entries()) {
      const where = `organizations.${index} (${organization.slug})`;
      let org = await trx<OrganizationRow>('organizations').where({ slug: organization.slug }).first('id', 'name');
      if (!org) {
        const [created] = await trx('organizations')
          .insert({ slug: organization.slug, name: organization.name })
          .returning<Pick<OrganizationRow, 'id' | 'name'>[]>(['id', 'name']);
        org = created!;
        count('organizations', 'created');
        await record('organization.import', { type: 'organization', id: org.id }, { id: org.id, slug: organization.slug }, null, {
          slug: organization.slug,
          name: organization.name,
        });
      } else if (org.name !== organization.name) {
        await trx('organizations').where({ id: org.id }).update({ name: organization.name });
        count('organizations', 'updated');
        await record(
          'organization.import',
          { type: 'organization', id: org.id },
          { id: org.id, slug: organization.slug },
          { name: org.name },
          { name: organization.name },
        );
      }
      const scope = { id: org.id, slug: organization.slug };

      const roleIds = new Map(builtIn);
      for (const row of await trx<RoleRow>('roles').where({ organization_id: scope.id }).select('id', 'name'))
        roleIds.set(row.name, row.id);
      for (const role of organization.roles) {
        const existing = await trx<RoleRow>('roles').where({ organization_id: scope.id, name: role.name }).first('id', 'permissions');
        if (!existing) {
          const [row] = await trx('roles')
            .insert({ organization_id: scope.id, name: role.name, permissions: role.permissions })
            .returning<IdRow[]>('id');
          roleIds.set(role.name, row!.id);
          count('roles', 'created');
          await record('role.import', { type: 'role', id: row!.id }, scope, null, role);
        } else if (JSON.stringify(existing.permissions) !== JSON.stringify(role.permissions)) {
          await trx('roles').where({ id: existing.id }).update({ permissions: role.permissions });
          count('roles', 'updated');
          await record(
            'role.import',
            { type: 'role', id: existing.id },
            scope,
            { permissions: existing.permissions },
            { permissions: role.permissions },
          );
        }
      }
      const roleId = (name: string, context: string) => {
        const id = roleIds.get(name);
        if (!id) throw new InputError(`${where}: ${context}: no role ${name} (a built-in role or one listed under roles)`);
        return id;
      };

      for (const member of organization.members) {
        const memberId = await userId(member.user, `${where}: members`);
        const role = roleId(member.role, `member ${member.user}`);
        const existing = await trx<MembershipRow>('organization_members')
          .where({ organization_id: scope.id, user_id: memberId })
          .first('role_id');
        if (!existing) {
          await trx('organization_members').insert({ organization_id: scope.id, user_id: memberId, role_id: role });
          count('memberships', 'created');
          await record('member.import', { type: 'member', id: memberId }, scope, null, { user: member.user, role: member.role });
        } else if (existing.role_id !== role) {
          await trx('organization_members').where({ organization_id: scope.id, user_id: memberId }).update({ role_id: role });
          count('memberships', 'updated');
          await record(
            'member.import',
            { type: 'member', id: memberId },
            scope,
            { role_id: existing.role_id },
            { user: member.user, role: member.role },
          );
        }
      }

      for (const team of organization.teams) {
        let row = await trx<TeamRow>('teams').where({ organization_id: scope.id, name: team.name }).first('id');
        if (!row) {
          const [created] = await trx('teams').insert({ organization_id: scope.id, name: team.name }).returning<IdRow[]>('id');
          row = created!;
          count('teams', 'created');
          await record('team.import', { type: 'team', id: row.id }, scope, null, { name: team.name });
        }
        for (const memberSubject of team.members) {
          const memberId = await userId(memberSubject, `${where}: team ${team.name}`);
          if (!(await trx('organization_members').where({ organization_id: scope.id, user_id: memberId }).first('user_id'))) {
            throw new InputError(
              `${where}: team ${team.name}: ${memberSubject} is not a member of ${organization.slug} (list them under members)`,
            );
          }
          const inserted = await trx('team_members')
            .insert({ team_id: row.id, user_id: memberId })
            .onConflict(['team_id', 'user_id'])
            .ignore()
            .returning('user_id');
          if (inserted.length === 0) continue;
          count('team members', 'created');
          await record('team.member.import', { type: 'team', id: row.id }, scope, null, { user: memberSubject });
        }
        for (const roleName of team.roles) {
          const inserted = await trx('team_roles')
            .insert({ team_id: row.id, role_id: roleId(roleName, `team ${team.name}`) })
            .onConflict(['team_id', 'role_id'])
            .ignore()
            .returning('role_id');
          if (inserted.length === 0) continue;
          count('team roles', 'created');
          await record('team.role.import', { type: 'team', id: row.id }, scope, null, { role: roleName });
        }
      }

      for (const [table, kind] of [
        ['projects', 'projects'],
        ['credentials', 'credentials'],
      ] as const) {
        for (const item of organization[table]) {
          const existing = await trx<SlugRow>(table).where({ organization_id: scope.id, slug: item.slug }).first('id', 'name');
          const name = item.name ?? null;
          if (!existing) {
            const [row] = await trx(table).insert({ organization_id: scope.id, slug: item.slug, name }).returning<IdRow[]>('id');
            count(kind, 'created');
            await record(`${table.slice(0, -1)}.import`, { type: table.slice(0, -1), id: row!.id }, scope, null, item);
          } else if (item.name !== undefined && existing.name !== name) {
            await trx(table).where({ id: existing.id }).update({ name });
            count(kind, 'updated');
            await record(
              `${table.slice(0, -1)}.import`,
              { type: table.slice(0, -1), id: existing.id },
              scope,
              { name: existing.name },
              { name },
            );
          }
        }
      }

      for (const invitation of organization.invitations) {
        const pending = await trx('invitations')
          .where({ organization_id: scope.id })
          .whereRaw('lower(email) = lower(?)', [invitation.email])
          .whereNull('accepted_at')
          .whereNull('revoked_at')
          .whereRaw('expires_at > now()')
          .first<IdRow | undefined>('id');
        if (pending) continue;
        const [row] = await trx('invitations')
          .insert({
            organization_id: scope.id,
            email: invitation.email,
            role_id: roleId(invitation.role, `invitation ${invitation.email}`),
          })
          .returning<IdRow[]>('id');
        count('invitations', 'created');
        await record('invitation.import', { type: 'invitation', id: row!.id }, scope, null, invitation);
      }
    }
  });
  return summary;
}

function pick(row: Record<string, unknown>, keys: string[]): Record<string, unknown> {
  return Object.fromEntries(keys.map((key) => [key, row[key]]));
}

/** The whole directory in the import format, in a stable order (so two exports of one state are equal). */
export async function exportDirectory(db: Knex): Promise<DirectoryDocument> {
  const users = await db<UserRow>('users').select('id', 'subject', 'email', 'email_verified', 'display_name').orderBy('subject');
  const subjects = new Map(users.map((user) => [user.id, user.subject]));
  const roleNames = new Map((await db<RoleRow>('roles').select('id', 'name')).map((role) => [role.id, role.name]));
  const organizations = await db<OrganizationRow>('organizations').select('id', 'slug', 'name').orderBy('slug');
  const out: DirectoryDocument = {
    users: users.map((user) => ({
      subject: user.subject,
      ...(user.email !== null ? { email: user.email } : {}),
      email_verified: user.email_verified,
      ...(user.display_name !== null ? { display_name: user.display_name } : {}),
    })),
    organizations: [],
  };
  const bySubject = (a: { user: string }, b: { user: string }) => (a.user < b.user ? -1 : a.user > b.user ? 1 : 0);
  for (const org of organizations) {
    const members = (await db<MembershipRow>('organization_members').where({ organization_id: org.id }).select('user_id', 'role_id'))
      .map((member) => ({
        user: subjects.get(member.user_id)!,
        role: roleNames.get(member.role_id)!,
      }))
      .sort(bySubject);
    const roles = (await db<RoleRow>('roles').where({ organization_id: org.id }).select('name', 'permissions').orderBy('name')).map(
      (role) => ({
        name: role.name,
        permissions: role.permissions,
      }),
    );
    const teams = [];
    for (const team of await db<TeamRow>('teams').where({ organization_id: org.id }).select('id', 'name').orderBy('name')) {
      const teamMembers = (await db<TeamMemberRow>('team_members').where({ team_id: team.id }).select('user_id'))
        .map((row) => subjects.get(row.user_id)!)
        .sort();
      const teamRoles = (await db<TeamRoleRow>('team_roles').where({ team_id: team.id }).select('role_id'))
        .map((row) => roleNames.get(row.role_id)!)
        .sort();
      teams.push({ name: team.name, members: teamMembers, roles: teamRoles });
    }
    const named = (rows: { slug: string; name: string | null }[]) =>
      rows.map((row) => ({ slug: row.slug, ...(row.name !== null ? { name: row.name } : {}) }));
    const invitations = await db<InvitationTableRow>('invitations')
      .where({ organization_id: org.id })
      .whereNull('accepted_at')
      .whereNull('revoked_at')
      .whereRaw('expires_at > now()')
      .select('email', 'role_id')
      .orderBy('email');
    out.organizations!.push({
      slug: org.slug,
      name: org.name,
      members,
      roles,
      teams,
      projects: named(await db<SlugRow>('projects').where({ organization_id: org.id }).select('slug', 'name').orderBy('slug')),
      credentials: named(await db<SlugRow>('credentials').where({ organization_id: org.id }).select('slug', 'name').orderBy('slug')),
      invitations: invitations.map((row) => ({
        email: row.email,
        role: row.role_id ? roleNames.get(row.role_id)! : 'default',
      })),
    });
  }
  return out;
}
