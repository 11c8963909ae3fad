// Invitations to an organization: issued for an e-mail address with a role and an expiry,
// revoked by the organization, accepted at most once by the verified owner of that address.
// The state is derived from the row (accepted, revoked, expired, else pending), never stored.
import type { Knex } from 'knex';
import { ConflictError, ForbiddenError, NotFoundError } from '../base/errors';
import { isUuid } from '../db/uuid';
import type { MemberStore } from './member-store';
import type { RoleRow } from './role-store';

export type InvitationState = 'pending' | 'accepted' | 'expired' | 'revoked';

export interface Invitation {
  id: string;
  email: string;
  role: string;
  state: InvitationState;
  expires_at: string;
  created_at: string;
  accepted_at: string | null;
}

// A type, not an interface: paginate() takes rows as records.
export type InvitationRow = {
  id: string;
  organization_id: string;
  organization_slug: string;
  email: string;
  role_id: string | null;
  role: string;
  state: InvitationState;
  expires_at: Date;
  created_at: Date;
  accepted_at: Date | null;
};

export function toInvitation(row: InvitationRow): Invitation {
  return {
    id: row.id,
    email: row.email,
    role: row.role,
    state: row.state,
    expires_at: row.expires_at.toISOString(),
    created_at: row.created_at.toISOString(),
    accepted_at: row.accepted_at?.toISOString() ?? null,
  };
}

// Accepted and revoked are final; an invitation past its expiry is expired even if nobody
// looked at it then. An invitation without a role (rows written before the service) invites
// with the built-in `default` role.
const STATE_SQL = `case when i.accepted_at is not null then 'accepted'
  when i.revoked_at is not null then 'revoked'
  when now() >= i.expires_at then 'expired'
  else 'pending' end`;

export interface Invitee {
  id: string;
  email: string | null;
  email_verified: boolean;
}

export class InvitationStore {
  constructor(private readonly db: Knex | Knex.Transaction) {}

  /** The organization's invitations, every state, for a paginated list. */
  list(organizationId: string): Knex.QueryBuilder {
    return this.db('invitations as i')
      .join('organizations as o', 'o.id', 'i.organization_id')
      .leftJoin('roles as r', 'r.id', 'i.role_id')
      .where('i.organization_id', organizationId)
      .select(
        'i.id',
        'i.organization_id',
        'o.slug as organization_slug',
        'i.email',
        'i.role_id',
        this.db.raw(`coalesce(r.name, 'default') as role`),
        this.db.raw(`${STATE_SQL} as state`),
        'i.expires_at',
        'i.created_at',
        'i.accepted_at',
      );
  }

  /** `lock` holds the invitation's row until the transaction ends (to revoke or accept it). */
  async get(organizationId: string, id: string, options: { lock?: boolean } = {}): Promise<InvitationRow | undefined> {
    if (!isUuid(id)) return undefined;
    if (options.lock && !(await this.db('invitations').where({ id, organization_id: organizationId }).forUpdate().first('id')))
      return undefined;
    return (await this.list(organizationId).where('i.id', id).first()) as InvitationRow | undefined;
  }

  /**
   * Invites `email` with `role`. Refused (409) while a pending invitation for that address
   * exists or its owner is already a member. The organization's row is locked first, so two
   * concurrent invitations for one address cannot both pass the check.
   */
  async create(
    organizationId: string,
    input: { email: string; role: RoleRow; expiresInDays: number; invitedBy: string | null },
  ): Promise<InvitationRow> {
    await this.db('organizations').where({ id: organizationId }).forUpdate().select('id');
    const pending = await this.list(organizationId)
      .whereRaw('lower(i.email) = lower(?)', [input.email])
      .whereRaw(`${STATE_SQL} = 'pending'`)
      .first<{ id: string } | undefined>('i.id');
    if (pending)
      throw new ConflictError(`a pending invitation for ${input.email} already exists (${pending.id}); revoke it first to invite again`);
    const member = await this.db('organization_members as om')
      .join('users as u', 'u.id', 'om.user_id')
      .where('om.organization_id', organizationId)
      .whereRaw('lower(u.email) = lower(?)', [input.email])
      .first<{ id: string } | undefined>('u.id');
    if (member) throw new ConflictError(`${input.email} already belongs to a member of this organization (user ${member.id})`);
    const [inserted] = await this.db('invitations')
      .insert({
        organization_id: organizationId,
        email: input.email,
        role_id: input.role.id,
        expires_at: this.db.raw(`now() + make_interval(days => ?)`, [input.expiresInDays]),
        invited_by: input.invitedBy,
      })
      .returning<{ id: string }[]>('id');
    return (await this.get(organizationId, inserted!.id))!;
  }

  /** The caller as an invitee: their users row's address and whether it is verified. */
  async invitee(userId: string): Promise<Invitee | undefined> {
    return this.db<Invitee>('users').where({ id: userId }).first('id', 'email', 'email_verified');
  }

  /** Revokes `invitation` (read with `lock`); 409 when it is no longer pending. */
  async revoke(invitation: InvitationRow): Promise<InvitationRow> {
    if (invitation.state !== 'pending')
      throw new ConflictError(`invitation '${invitation.id}' is ${invitation.state} and can no longer be revoked`);
    await this.db('invitations').where({ id: invitation.id }).update({ revoked_at: this.db.fn.now() });
    return (await this.get(invitation.organization_id, invitation.id))!;
  }

  /**
   * Accepts the invitation for `invitee`, exactly once: the invitation's row is locked, so a
   * concurrent accept waits and then finds it accepted (409). The address must match the
   * invitee's (case-insensitively) and be verified; the membership gets the invitation's role.
   */
  async accept(id: string, invitee: Invitee, members: MemberStore): Promise<{ before: InvitationRow; after: InvitationRow }> {
    const found = isUuid(id)
      ? await this.db('invitations').where({ id }).first<Pick<InvitationRow, 'organization_id'> | undefined>('organization_id')
      : undefined;
    if (!found) throw new NotFoundError(`invitation '${id}' not found`);
    const before = await this.get(found.organization_id, id, { lock: true });
    if (!before) throw new NotFoundError(`invitation '${id}' not found`);
    if (invitee.email === null || invitee.email.toLowerCase() !== before.email.toLowerCase()) {
      throw new ForbiddenError(`invitation '${id}' is addressed to another e-mail address`);
    }
    if (!invitee.email_verified) {
      throw new ForbiddenError(
        `your e-mail address ${invitee.email} is not verified; verify it with your identity provider, then accept invitation '${id}'`,
      );
    }
    if (before.state !== 'pending') throw new ConflictError(`invitation '${id}' is ${before.state}`);
    const roleId =
      before.role_id ?? (await this.db<RoleRow>('roles').whereNull('organization_id').where({ name: 'default' }).first('id'))!.id;
    if (!(await members.add(before.organization_id, invitee.id, roleId))) {
      throw new ConflictError(`you are already a member of this organization; invitation '${id}' stays ${before.state}`);
    }
    await this.db('invitations').where({ id }).update({ accepted_at: this.db.fn.now(), accepted_by: invitee.id });
    return { before, after: (await this.get(before.organization_id, id))! };
  }
}
