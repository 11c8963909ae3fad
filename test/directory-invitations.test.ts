// Invitations through the running gateway and directory service, with real tokens on a real
// PostgreSQL: inviting (never with a role the inviter could not grant), the 409s for a pending
// duplicate or a member, acceptance bound to the verified address and done exactly once,
// expiry and revocation.
import { expect } from '@jest/globals';
import type { Page } from '../src/directory-service/http-semantics';
import type { Invitation } from '../src/directory-service/invitation-store';
import type { Member } from '../src/directory-service/member-store';
import type { Organization } from '../src/directory-service/organization-store';
import type { Directory } from './support/directory-fixtures';
import { startDirectoryStack, type Caller, type DirectoryStack, type Problem } from './support/directory-stack';
import { waitFor } from './support/wait-for';

let stack: DirectoryStack;
let alice: Caller;
let users: Directory['users'];

const db = () => stack.database.db;

/** A registered user `<name>|sub` with `<name>@example.com`, verified or not. */
async function person(name: string, verified = true): Promise<{ id: string; caller: Caller }> {
  const [row] = await db()('users')
    .insert({ subject: `${name}|sub`, email: `${name}@example.com`, display_name: name, email_verified: verified })
    .returning<{ id: string }[]>('id');
  return { id: row!.id, caller: await stack.as(name) };
}

/** What POST /invitations/{id}/accept answers. */
interface Acceptance {
  organization: Organization;
  member: Member;
  invitation: Invitation;
}

const invite = <T = Invitation>(body: Record<string, unknown>, caller = alice) =>
  caller.request<T>('/orgs/acme/invitations', { method: 'POST', json: body });
const accept = <T = Acceptance>(caller: Caller, id: string) => caller.request<T>(`/invitations/${id}/accept`, { method: 'POST' });

beforeAll(async () => {
  stack = await startDirectoryStack();
  users = stack.directory!.users;
  alice = await stack.as('alice');
});

afterAll(async () => {
  await stack?.close();
});

describe('inviting', () => {
  it('invites an address with a role and an expiry, and lists it as pending', async () => {
    const response = await invite({ email: 'erin@example.com', role: 'project-creator', expires_in_days: 3 });
    expect(response.status).toBe(201);
    const invitation = await response.json();
    expect(invitation).toEqual({
      id: expect.any(String),
      email: 'erin@example.com',
      role: 'project-creator',
      state: 'pending',
      expires_at: expect.any(String),
      created_at: expect.any(String),
      accepted_at: null,
    });
    expect(response.headers.get('location')).toBe(`/orgs/acme/invitations/${invitation.id}`);
    const days = (Date.parse(invitation.expires_at) - Date.parse(invitation.created_at)) / 86_400_000;
    expect(days).toBeCloseTo(3, 3);

    const list = await (await alice.request<Page<Invitation>>('/orgs/acme/invitations')).json();
    expect(list.items.map((item) => [item.email, item.state]).sort()).toEqual([
      ['carol@example.com', 'pending'],
      ['erin@example.com', 'pending'],
    ]);
    expect(await db()('directory_events').where({ action: 'invitation.create', target_id: invitation.id }).pluck('actor')).toEqual([
      users.alice,
    ]);
  });

  it('defaults to the default role for 7 days, and keeps expires_in_days within 1 to 30', async () => {
    const invitation = await (await invite({ email: 'default@example.com' })).json();
    expect(invitation.role).toBe('default');
    expect((Date.parse(invitation.expires_at) - Date.parse(invitation.created_at)) / 86_400_000).toBeCloseTo(7, 3);
    expect((await invite({ email: 'zero@example.com', expires_in_days: 0 })).status).toBe(422);
    expect((await invite({ email: 'long@example.com', expires_in_days: 31 })).status).toBe(422);
    expect((await invite({ email: 'not-an-address' })).status).toBe(422);
  });

  it('answers 409 while a pending invitation exists for the address (any case) or its owner is a member', async () => {
    const duplicate = await invite<Problem>({ email: 'ERIN@example.com' });
    expect(duplicate.status).toBe(409);
    expect((await duplicate.json()).detail).toMatch(/a pending invitation for ERIN@example.com already exists/);
    const member = await invite<Problem>({ email: 'Bob@Example.com' });
    expect(member.status).toBe(409);
    expect((await member.json()).detail).toMatch(/already belongs to a member/);
  });

  it('refuses (403) to invite with a role carrying a permission the inviter does not hold', async () => {
    const inviter = (
      await db()('roles')
        .insert({ organization_id: stack.directory!.orgs.acme, name: 'inviter', permissions: ['member:read', 'member:invite'] })
        .returning<{ id: string }[]>('id')
    )[0]!.id;
    await db()('organization_members')
      .where({ organization_id: stack.directory!.orgs.acme, user_id: users.dave })
      .update({ role_id: inviter });
    const dave = await stack.as('dave');

    const admin = await invite<Problem>({ email: 'boss@example.com', role: 'organization-admin' }, dave);
    expect(admin.status).toBe(403);
    expect((await admin.json()).detail).toMatch(/you cannot grant permissions you do not hold in this organization: \*/);
    const builtin = await invite<Problem>({ email: 'boss@example.com', role: 'default' }, dave);
    expect(builtin.status).toBe(403);
    expect((await builtin.json()).detail).toMatch(/organization:read/);
    expect(await db()('invitations').where({ email: 'boss@example.com' })).toEqual([]);
    expect((await invite({ email: 'boss@example.com', role: 'inviter' }, dave)).status).toBe(201);
  });
});

describe('accepting', () => {
  let erinInvitation: string;
  beforeAll(async () => {
    erinInvitation = (await db()('invitations').where({ email: 'erin@example.com' }).first<{ id: string } | undefined>('id'))!.id;
  });

  it('refuses (403) while the invitee has not verified their address, and changes nothing', async () => {
    await db()('users').where({ id: users.erin }).update({ email_verified: false });
    const response = await accept<Problem>(await stack.as('erin'), erinInvitation);
    expect(response.status).toBe(403);
    expect((await response.json()).detail).toMatch(/not verified/);
    expect(await db()('organization_members').where({ user_id: users.erin })).toEqual([]);
  });

  it('refuses (403) someone else, whatever their address says', async () => {
    const response = await accept<Problem>(await stack.as('carol'), erinInvitation);
    expect(response.status).toBe(403);
    expect((await response.json()).detail).toMatch(/addressed to another e-mail address/);
  });

  it("makes the verified invitee a member with the invitation's role, and only once", async () => {
    await db()('users').where({ id: users.erin }).update({ email_verified: true, email: 'Erin@Example.com' });
    const erin = await stack.as('erin');
    const response = await accept(erin, erinInvitation);
    expect(response.status).toBe(201);
    expect(response.headers.get('location')).toBe(`/orgs/acme/members/${users.erin}`);
    const body = await response.json();
    expect(body.organization).toMatchObject({ slug: 'acme' });
    expect(body.member).toMatchObject({ user_id: users.erin, role: 'project-creator' });
    expect(body.invitation).toMatchObject({ state: 'accepted', accepted_at: expect.any(String) });

    // The gateway hears of the new membership by notification, within milliseconds: erin is
    // then a member holding project-creator (which does not include organization:read).
    await waitFor(
      async () => (await (await erin.request<Problem>('/orgs/acme')).json()).detail.endsWith('(your roles there: project-creator)'),
      {
        what: "the gateway to see erin's membership",
      },
    );
    expect((await accept(erin, erinInvitation)).status).toBe(409);
    expect(await db()('directory_events').where({ action: 'invitation.accept', target_id: erinInvitation }).pluck('actor')).toEqual([
      users.erin,
    ]);
  });

  it('accepts exactly once under two parallel accepts', async () => {
    const frank = await person('frank');
    const { id } = await (await invite({ email: 'frank@example.com' })).json();
    const statuses = (await Promise.all([accept(frank.caller, id), accept(frank.caller, id)])).map((response) => response.status);
    expect(statuses.sort()).toEqual([201, 409]);
    expect(await db()('organization_members').where({ user_id: frank.id })).toHaveLength(1);
    expect(await db()('directory_events').where({ action: 'invitation.accept', target_id: id })).toHaveLength(1);
  });

  it('answers 409 to an invitee who became a member meanwhile, and leaves the invitation pending', async () => {
    await db()('users').where({ id: users.carol }).update({ email_verified: true });
    await db()('organization_members').insert({
      organization_id: stack.directory!.orgs.acme,
      user_id: users.carol,
      role_id: (await db()('roles').whereNull('organization_id').where({ name: 'default' }).first<{ id: string } | undefined>('id'))!.id,
    });
    const response = await accept<Problem>(await stack.as('carol'), stack.directory!.invitations.carol);
    expect(response.status).toBe(409);
    expect((await response.json()).detail).toMatch(/already a member/);
    expect(await db()('invitations').where({ id: stack.directory!.invitations.carol }).pluck('accepted_at')).toEqual([null]);
  });

  it('refuses an expired invitation (409) and lists it as expired', async () => {
    const gina = await person('gina');
    const { id } = await (await invite({ email: 'gina@example.com' })).json();
    await db()('invitations')
      .where({ id })
      .update({ expires_at: db().raw(`now() - interval '1 minute'`) });
    const response = await accept<Problem>(gina.caller, id);
    expect(response.status).toBe(409);
    expect((await response.json()).detail).toBe(`invitation '${id}' is expired`);
    const list = await (await alice.request<Page<Invitation>>('/orgs/acme/invitations?limit=100')).json();
    expect(list.items.find((item) => item.id === id)?.state).toBe('expired');
    expect(await db()('organization_members').where({ user_id: gina.id })).toEqual([]);
    // An expired invitation no longer blocks a new one for that address.
    expect((await invite({ email: 'gina@example.com' })).status).toBe(201);
  });
});

describe('revoking', () => {
  it('revokes a pending invitation (honouring If-Match), which can then be neither accepted nor revoked again', async () => {
    const hank = await person('hank');
    const { id } = await (await invite({ email: 'hank@example.com' })).json();
    const read = await alice.request(`/orgs/acme/invitations/${id}`);
    expect(read.status).toBe(200);
    expect(await read.json()).toMatchObject({ id, email: 'hank@example.com', state: 'pending' });
    expect((await alice.request(`/orgs/acme/invitations/${id}`, { method: 'DELETE', headers: { 'if-match': '"stale"' } })).status).toBe(
      412,
    );

    const revoked = await alice.request(`/orgs/acme/invitations/${id}`, {
      method: 'DELETE',
      headers: { 'if-match': read.headers.get('etag')! },
    });
    expect(revoked.status).toBe(204);
    const list = await (await alice.request<Page<Invitation>>('/orgs/acme/invitations?limit=100')).json();
    expect(list.items.find((item) => item.id === id)?.state).toBe('revoked');
    expect((await alice.request(`/orgs/acme/invitations/${id}`, { method: 'DELETE' })).status).toBe(409);
    const refused = await accept<Problem>(hank.caller, id);
    expect(refused.status).toBe(409);
    expect((await refused.json()).detail).toBe(`invitation '${id}' is revoked`);
    expect(await db()('organization_members').where({ user_id: hank.id })).toEqual([]);
    expect(await db()('directory_events').where({ action: 'invitation.revoke', target_id: id }).pluck('actor')).toEqual([users.alice]);
  });
});
