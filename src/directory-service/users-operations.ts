// The users resource: registration from the gateway-verified token claims, the caller's
// profile and picture, and password reset handed to the identity provider. The gateway lets
// a caller reach only their own profile (R6); this service checks it again.
import { z } from 'zod';
import { ForbiddenError, InputError, NotConfiguredError, NotFoundError, UpstreamError } from '../base/errors';
import type { Actor } from './assertion-verifier';
import { etagOf, requireIfMatch } from './http-semantics';
import { defineOperation, requireUser, type DirectoryDeps, type Operation } from './operation';
import { picturePath, UserStore, type UserRow } from './user-store';

export const userSchema = z.object({
  id: z.uuid(),
  subject: z.string(),
  email: z.string().nullable(),
  email_verified: z.boolean(),
  display_name: z.string().nullable(),
  picture_url: z.string().nullable(),
  created_at: z.iso.datetime(),
  updated_at: z.iso.datetime(),
});
export type User = z.infer<typeof userSchema>;

export function userRepresentation(row: UserRow): User {
  return {
    id: row.id,
    subject: row.subject,
    email: row.email,
    email_verified: row.email_verified,
    display_name: row.display_name,
    picture_url: row.picture_url,
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
  };
}

const profileUpdate = z
  .strictObject({
    display_name: z.string().trim().min(1).max(200).nullable().optional(),
    email: z.email().max(320).optional(),
  })
  .refine((update) => Object.keys(update).length > 0, 'name at least one of display_name, email');

const userParams = z.object({ user: z.uuid() });

export const PICTURE_LIMIT_BYTES = 1024 * 1024;
const PICTURE_TYPES = ['image/png', 'image/jpeg', 'image/webp'];
const WEBHOOK_TIMEOUT_MS = 5_000;

/** The image type of `data` by its magic bytes: the client's Content-Type is not believed. */
export function pictureType(data: Buffer): string | undefined {
  if (data.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) return 'image/png';
  if (data.length >= 3 && data[0] === 0xff && data[1] === 0xd8 && data[2] === 0xff) return 'image/jpeg';
  if (data.length >= 12 && data.toString('latin1', 0, 4) === 'RIFF' && data.toString('latin1', 8, 12) === 'WEBP') return 'image/webp';
  return undefined;
}

/** `/users/{user}` names the caller only (R6): the gateway enforces it, and so does the service. */
function requireSelf(actor: Actor, userId: string): string {
  const self = requireUser(actor);
  if (self !== userId) throw new ForbiddenError('a profile can be read and changed only by its owner');
  return self;
}

export const usersOperations = (deps: DirectoryDeps): Operation[] => {
  const users = new UserStore(deps.db);

  const readProfile = async (userId: string) => {
    const row = await users.findById(userId);
    if (!row) throw new NotFoundError(`no user ${userId}`);
    return { body: userRepresentation(row) };
  };

  const updateProfile = (
    actor: Actor,
    userId: string,
    update: z.infer<typeof profileUpdate>,
    headers: Parameters<typeof requireIfMatch>[0],
  ) =>
    deps.db.transaction(async (trx) => {
      const store = new UserStore(trx);
      const current = await store.lockById(userId);
      if (!current) throw new NotFoundError(`no user ${userId}`);
      const before = userRepresentation(current);
      requireIfMatch(headers, etagOf(before));
      const emailChanged = update.email !== undefined && update.email !== current.email;
      const updated = await store.update(userId, {
        ...(update.display_name !== undefined ? { display_name: update.display_name } : {}),
        // A new address is unverified until the identity provider says otherwise.
        ...(emailChanged ? { email: update.email, email_verified: false } : {}),
      });
      const after = userRepresentation(updated);
      await deps.events.append(trx, {
        actor,
        action: 'user.update',
        organizationId: null,
        organizationSlug: null,
        targetType: 'user',
        targetId: userId,
        before,
        after,
      });
      return { body: after };
    });

  return [
    defineOperation({
      method: 'PUT',
      path: '/users/me',
      service: 'users',
      summary: 'Register the caller from the gateway-verified token claims (sub, email, email_verified, name); idempotent',
      response: userSchema,
      status: 200,
      etag: true,
      handler: ({ actor }) =>
        deps.db.transaction(async (trx) => {
          const store = new UserStore(trx);
          const email = actor.email ?? null;
          const emailVerified = email !== null && actor.emailVerified === true;
          const created = await store.insertIfAbsent({
            subject: actor.sub,
            email,
            email_verified: emailVerified,
            display_name: actor.name ?? null,
          });
          if (created) {
            const after = userRepresentation(created);
            await deps.events.append(trx, {
              actor: { ...actor, userId: created.id },
              action: 'user.register',
              organizationId: null,
              organizationSlug: null,
              targetType: 'user',
              targetId: created.id,
              before: null,
              after,
            });
            return { status: 201, body: after, headers: { location: '/users/me' } };
          }
          // Registered already: the identity provider's current address (and whether it verified it) wins.
          const current = (await store.lockBySubject(actor.sub))!;
          if (email === null || (email === current.email && emailVerified === current.email_verified))
            return { body: userRepresentation(current) };
          const before = userRepresentation(current);
          const after = userRepresentation(await store.update(current.id, { email, email_verified: emailVerified }));
          await deps.events.append(trx, {
            actor,
            action: 'user.update',
            organizationId: null,
            organizationSlug: null,
            targetType: 'user',
            targetId: current.id,
            before,
            after,
          });
          return { body: after };
        }),
    }),
    defineOperation({
      method: 'GET',
      path: '/users/me',
      service: 'users',
      summary: "Read the caller's profile",
      response: userSchema,
      status: 200,
      etag: true,
      handler: ({ actor }) => readProfile(requireUser(actor)),
    }),
    defineOperation({
      method: 'PATCH',
      path: '/users/me',
      service: 'users',
      summary: "Change the caller's display name or e-mail (a new e-mail is unverified)",
      body: profileUpdate,
      response: userSchema,
      status: 200,
      etag: true,
      handler: ({ actor, body, headers }) => updateProfile(actor, requireUser(actor), body, headers),
    }),
    defineOperation({
      method: 'GET',
      path: '/users/:user',
      service: 'users',
      summary: 'Read a profile (own only)',
      params: userParams,
      response: userSchema,
      status: 200,
      etag: true,
      handler: ({ actor, params }) => readProfile(requireSelf(actor, params.user)),
    }),
    defineOperation({
      method: 'PATCH',
      path: '/users/:user',
      service: 'users',
      summary: 'Change a profile (own only)',
      params: userParams,
      body: profileUpdate,
      response: userSchema,
      status: 200,
      etag: true,
      handler: ({ actor, params, body, headers }) => updateProfile(actor, requireSelf(actor, params.user), body, headers),
    }),
    defineOperation({
      method: 'PUT',
      path: '/users/me/picture',
      service: 'users',
      summary: "Upload the caller's picture: PNG, JPEG or WebP (by content), at most 1 MiB",
      rawBody: { mediaTypes: PICTURE_TYPES, limitBytes: PICTURE_LIMIT_BYTES },
      response: userSchema,
      status: 200,
      etag: true,
      handler: ({ actor, raw, headers }) => {
        const userId = requireUser(actor);
        const data = raw ?? Buffer.alloc(0);
        const contentType = pictureType(data);
        if (!contentType)
          throw new InputError('the picture must be a PNG, JPEG or WebP image (checked by its content, not its Content-Type)', 415);
        return deps.db.transaction(async (trx) => {
          const store = new UserStore(trx);
          const current = await store.lockById(userId);
          if (!current) throw new NotFoundError(`no user ${userId}`);
          const before = userRepresentation(current);
          requireIfMatch(headers, etagOf(before));
          await store.savePicture(userId, contentType, data);
          const after = userRepresentation(await store.update(userId, { picture_url: picturePath(userId) }));
          // The record says what changed, never the bytes.
          await deps.events.append(trx, {
            actor,
            action: 'user.picture',
            organizationId: null,
            organizationSlug: null,
            targetType: 'user',
            targetId: userId,
            before: { picture_url: before.picture_url },
            after: { picture_url: after.picture_url, content_type: contentType, bytes: data.length },
          });
          return { body: after };
        });
      },
    }),
    defineOperation({
      method: 'GET',
      path: '/users/:user/picture',
      service: 'users',
      summary: "Download a user's picture (own only)",
      params: userParams,
      response: { binary: PICTURE_TYPES },
      status: 200,
      handler: async ({ actor, params }) => {
        const picture = await users.picture(requireSelf(actor, params.user));
        if (!picture) throw new NotFoundError(`user ${params.user} has no picture`);
        return { binary: { contentType: picture.content_type, data: picture.data }, headers: { 'cache-control': 'private, no-cache' } };
      },
    }),
    defineOperation({
      method: 'POST',
      path: '/users/me/password-reset',
      service: 'users',
      summary: "Ask the identity provider to reset the caller's password (directory.password_reset_webhook)",
      response: null,
      status: 202,
      handler: async ({ actor }) => {
        const webhook = deps.config.password_reset_webhook;
        if (!webhook) {
          throw new NotConfiguredError(
            'password reset belongs to the identity provider and is not configured: set directory.password_reset_webhook to its reset endpoint (it receives {sub, email})',
          );
        }
        const user = await users.findById(requireUser(actor));
        if (!user) throw new NotFoundError('register first: PUT /users/me');
        let response: Response;
        try {
          response = await deps.fetch(webhook, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ sub: user.subject, email: user.email }),
            signal: AbortSignal.timeout(WEBHOOK_TIMEOUT_MS),
          });
          await response.arrayBuffer();
        } catch (error) {
          throw new UpstreamError(
            `the password reset webhook (directory.password_reset_webhook) failed: ${(error as Error).message}`,
            502,
            { cause: error },
          );
        }
        if (!response.ok)
          throw new UpstreamError(`the password reset webhook (directory.password_reset_webhook) answered ${response.status}`, 502);
        return {};
      },
    }),
  ];
};
