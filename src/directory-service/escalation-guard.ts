// No escalation: nobody hands out a permission they do not hold themselves in that
// organization, whether by creating or changing a role, attaching one to a team, changing a
// member's role or inviting with one. The gateway cannot judge this (it never sees the body).
import type { Knex } from 'knex';
import { ForbiddenError } from '../base/errors';
import { missingPermissions } from './permission-grammar';

// The caller's permissions in one organization, counted exactly as the gateway's subject
// read model counts them (src/directory/pg-subject-loader.ts, R4): the default role when it
// is built-in or the organization's own, plus the roles of the caller's teams of that
// organization that are built-in or its own; nothing at all for a non-member.
const HELD_PERMISSIONS_SQL = `
with membership as (
  select om.organization_id, om.user_id, om.role_id
  from organization_members om
  where om.organization_id = ? and om.user_id = ?
),
counted_roles as (
  select r.id
  from membership m
  join roles r on r.id = m.role_id and (r.organization_id is null or r.organization_id = m.organization_id)
  union
  select r.id
  from membership m
  join team_members tm on tm.user_id = m.user_id
  join teams t on t.id = tm.team_id and t.organization_id = m.organization_id
  join team_roles tr on tr.team_id = t.id
  join roles r on r.id = tr.role_id and (r.organization_id is null or r.organization_id = m.organization_id)
)
select coalesce(array_agg(distinct p.permission), '{}'::text[]) as permissions
from counted_roles cr
join roles r on r.id = cr.id
cross join lateral unnest(r.permissions) as p(permission)
`;

export interface EscalationCheck {
  /** users.id of the caller (the assertion's `sub` claim); null holds nothing. */
  actorUserId: string | null;
  organizationId: string;
  /** What the caller is about to grant: the role's permissions (after the change). */
  permissions: readonly string[];
}

/** The caller's permissions in the organization (R4), read in the caller's transaction. */
export async function heldPermissions(db: Knex | Knex.Transaction, actorUserId: string | null, organizationId: string): Promise<string[]> {
  if (actorUserId === null) return [];
  const { rows } = await db.raw<{ rows: { permissions: string[] }[] }>(HELD_PERMISSIONS_SQL, [organizationId, actorUserId]);
  return rows[0]?.permissions ?? [];
}

/**
 * Throws a ForbiddenError (403) naming every permission the caller would grant without
 * holding it: held exactly, through `resource:*`, or through `*`. Call it inside the
 * transaction that makes the change, after resolving the role it grants.
 */
export async function assertNoEscalation(db: Knex | Knex.Transaction, check: EscalationCheck): Promise<void> {
  if (check.permissions.length === 0) return;
  const held = await heldPermissions(db, check.actorUserId, check.organizationId);
  const missing = missingPermissions(held, check.permissions);
  if (missing.length === 0) return;
  throw new ForbiddenError(
    `you cannot grant permissions you do not hold in this organization: ${missing.join(', ')} (a role, team role, member role or invitation may carry only permissions you hold)`,
  );
}
