// The users resource of the directory service, through the running gateway on a real
// PostgreSQL: registration from the token's claims, the profile with ETag/If-Match, e-mail
// changes, pictures checked by their bytes, and password reset handed to a real webhook.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from '@jest/globals';
import type { DirectoryEventRow } from '../src/directory-service/directory-events';
import type { UserRow } from '../src/directory-service/user-store';
import type { User } from '../src/directory-service/users-operations';
import { startDirectoryStack, type DirectoryStack, type Problem } from './support/directory-stack';
import { waitFor } from './support/wait-for';

const PNG = Buffer.concat([
  Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
  Buffer.from('IHDR-not-really-but-typed-by-magic'),
]);
const JPEG = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.from('JFIF')]);
const WEBP = Buffer.concat([Buffer.from('RIFF'), Buffer.from([0x10, 0, 0, 0]), Buffer.from('WEBPVP8 ')]);

let stack: DirectoryStack;

beforeAll(async () => {
  stack = await startDirectoryStack();
});

afterAll(async () => {
  await stack?.close();
});

describe('registration (PUT /users/me)', () => {
  it('refuses everything but registration to an unregistered subject, registers it from the token claims, and is idempotent', async () => {
    const frank = await stack.as('frank', { email: 'Frank@Example.com', email_verified: true, name: 'Frank Ocean' });

    const before = await frank.request<Problem>('/users/me');
    expect(before.status).toBe(403);
    expect((await before.json()).detail).toMatch(/register first: PUT \/users\/me/);

    const first = await frank.request<User>('/users/me', { method: 'PUT' });
    expect(first.status).toBe(201);
    const registered = await first.json();
    expect(registered).toMatchObject({
      subject: 'frank|sub',
      email: 'Frank@Example.com',
      email_verified: true,
      display_name: 'Frank Ocean',
      picture_url: null,
    });

    const again = await frank.request('/users/me', { method: 'PUT' });
    expect(again.status).toBe(200);
    expect(await again.json()).toEqual(registered);
    expect(await stack.database.db('users').where({ subject: 'frank|sub' }).count({ n: '*' })).toEqual([{ n: '1' }]);

    // The gateway's subject cache learns of the new row from the change notification.
    const profile = await waitFor(
      async () => {
        const response = await frank.request<User>('/users/me');
        return response.status === 200 && response;
      },
      { what: 'the registered profile to be readable' },
    );
    expect(await profile.json()).toEqual(registered);

    const events = await stack.database
      .db('directory_events')
      .where({ target_id: registered.id })
      .select('action', 'actor', 'after', 'request_id');
    expect(events).toEqual([{ action: 'user.register', actor: registered.id, after: registered, request_id: expect.any(String) }]);
  });

  it("takes the identity provider's verified address when a registered user registers again", async () => {
    const row = await stack.database.db<UserRow>('users').where({ subject: 'erin|sub' }).first('email_verified');
    expect(row?.email_verified).toBe(false);
    const erin = await stack.as('erin');
    const response = await erin.request('/users/me', { method: 'PUT' });
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ email: 'erin@example.com', email_verified: true });
  });
});

describe('the profile', () => {
  it('answers with a strong ETag and honours If-Match on PATCH (412 when stale)', async () => {
    const alice = await stack.as('alice');
    const read = await alice.request('/users/me');
    expect(read.status).toBe(200);
    const etag = read.headers.get('etag')!;
    expect(etag).toMatch(/^"[A-Za-z0-9_-]{43}"$/);
    expect((await alice.request('/users/me', { headers: { 'if-none-match': etag } })).status).toBe(304);

    const renamed = await alice.request('/users/me', {
      method: 'PATCH',
      headers: { 'if-match': etag },
      json: { display_name: 'Alice A.' },
    });
    expect(renamed.status).toBe(200);
    expect(await renamed.json()).toMatchObject({ display_name: 'Alice A.' });
    expect(renamed.headers.get('etag')).not.toBe(etag);

    const stale = await alice.request('/users/me', {
      method: 'PATCH',
      headers: { 'if-match': etag },
      json: { display_name: 'Lost update' },
    });
    expect(stale.status).toBe(412);
    expect(stale.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect((await (await alice.request<User>('/users/me')).json()).display_name).toBe('Alice A.');
  });

  it('resets email_verified when the e-mail changes, and keeps it when only the name does', async () => {
    const bob = await stack.as('bob');
    expect((await (await bob.request<User>('/users/me', { method: 'PUT' })).json()).email_verified).toBe(true);

    const renamed = await (await bob.request<User>('/users/me', { method: 'PATCH', json: { display_name: 'Bob' } })).json();
    expect(renamed.email_verified).toBe(true);

    const moved = await bob.request(`/users/${renamed.id}`, { method: 'PATCH', json: { email: 'bob@new.example.com' } });
    expect(moved.status).toBe(200);
    expect(await moved.json()).toMatchObject({ email: 'bob@new.example.com', email_verified: false });
    const event = await stack.database
      .db<DirectoryEventRow>('directory_events')
      .where({ target_id: renamed.id, action: 'user.update' })
      .orderBy('id', 'desc')
      .first('before', 'after');
    expect(event).toMatchObject({
      before: { email: 'bob@example.com', email_verified: true },
      after: { email: 'bob@new.example.com', email_verified: false },
    });
  });

  it('refuses an unknown field or an invalid e-mail (422), malformed JSON (400) and a body that is not JSON (415)', async () => {
    const alice = await stack.as('alice');
    expect((await alice.request('/users/me', { method: 'PATCH', json: { subject: 'someone-else' } })).status).toBe(422);
    expect((await alice.request('/users/me', { method: 'PATCH', json: { email: 'not-an-address' } })).status).toBe(422);
    expect(
      (await alice.request('/users/me', { method: 'PATCH', headers: { 'content-type': 'application/json' }, body: '{"display_name":' }))
        .status,
    ).toBe(400);
    expect(
      (await alice.request('/users/me', { method: 'PATCH', headers: { 'content-type': 'text/plain' }, body: 'display_name=x' })).status,
    ).toBe(415);
    expect(
      (await stack.database.db<UserRow>('users').where({ subject: 'alice|sub' }).first('subject', 'display_name'))!.display_name,
    ).not.toBe('x');
  });

  it("never shows or changes another user's profile", async () => {
    const bob = await stack.as('bob');
    const { alice } = stack.directory!.users;
    expect((await bob.request(`/users/${alice}`)).status).toBe(403);
    expect((await bob.request(`/users/${alice}`, { method: 'PATCH', json: { display_name: 'pwned' } })).status).toBe(403);
    expect((await stack.database.db<UserRow>('users').where({ id: alice }).first('display_name'))!.display_name).not.toBe('pwned');
  });
});

describe('the picture', () => {
  it.each([
    ['PNG', PNG, 'image/png'],
    ['JPEG', JPEG, 'image/jpeg'],
    ['WebP', WEBP, 'image/webp'],
  ])('stores a %s by its magic bytes and serves it back', async (_kind, bytes, type) => {
    const carol = await stack.as('carol');
    // The Content-Type the client claims is not what decides.
    const upload = await carol.request<User>('/users/me/picture', {
      method: 'PUT',
      headers: { 'content-type': 'application/octet-stream' },
      body: bytes,
    });
    expect(upload.status).toBe(200);
    const user = await upload.json();
    expect(user.picture_url).toBe(`/users/${user.id}/picture`);

    const download = await carol.request(user.picture_url!);
    expect(download.status).toBe(200);
    expect(download.headers.get('content-type')).toBe(type);
    expect(Buffer.from(await download.arrayBuffer())).toEqual(bytes);
  });

  it('refuses what is not a PNG, JPEG or WebP (415), whatever its Content-Type says', async () => {
    const carol = await stack.as('carol');
    const response = await carol.request<Problem>('/users/me/picture', {
      method: 'PUT',
      headers: { 'content-type': 'image/png' },
      body: Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"/>'),
    });
    expect(response.status).toBe(415);
    expect((await response.json()).detail).toMatch(/PNG, JPEG or WebP/);
  });

  it('refuses a picture larger than 1 MiB (413) and takes one of exactly 1 MiB', async () => {
    const carol = await stack.as('carol');
    const exact = Buffer.concat([PNG, Buffer.alloc(1024 * 1024 - PNG.length)]);
    expect(
      (await carol.request('/users/me/picture', { method: 'PUT', headers: { 'content-type': 'image/png' }, body: exact })).status,
    ).toBe(200);
    const tooLarge = Buffer.concat([exact, Buffer.alloc(1)]);
    const response = await carol.request('/users/me/picture', { method: 'PUT', headers: { 'content-type': 'image/png' }, body: tooLarge });
    expect(response.status).toBe(413);
  });

  it("records the change without the picture's bytes", async () => {
    const events = await stack.database
      .db('directory_events')
      .where({ action: 'user.picture' })
      .select<{ after: Record<string, unknown> }[]>('after');
    expect(events.length).toBeGreaterThan(0);
    for (const { after } of events) expect(Object.keys(after).sort()).toEqual(['bytes', 'content_type', 'picture_url']);
  });

  it("does not serve another user's picture", async () => {
    const carol = await stack.as('carol');
    const dave = await stack.as('dave');
    const { id } = await (await carol.request<User>('/users/me')).json();
    expect((await dave.request(`/users/${id}/picture`)).status).toBe(403);
  });
});

describe('password reset', () => {
  it('answers 501 naming directory.password_reset_webhook when it is not set', async () => {
    const alice = await stack.as('alice');
    const response = await alice.request<Problem>('/users/me/password-reset', { method: 'POST' });
    expect(response.status).toBe(501);
    expect(response.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect((await response.json()).detail).toMatch(/directory\.password_reset_webhook/);
  });

  describe('with a webhook', () => {
    let webhook: http.Server;
    let answer = 204;
    const received: { sub: string; email: string }[] = [];
    let withWebhook: DirectoryStack;

    beforeAll(async () => {
      webhook = http.createServer((req, res) => {
        let body = '';
        req.on('data', (chunk: Buffer) => (body += chunk.toString()));
        req.on('end', () => {
          received.push(JSON.parse(body) as { sub: string; email: string });
          res.statusCode = answer;
          res.end();
        });
      });
      await new Promise<void>((resolve) => webhook.listen(0, '127.0.0.1', resolve));
      const { port } = webhook.address() as AddressInfo;
      withWebhook = await startDirectoryStack({
        directory: { password_reset_webhook: `http://127.0.0.1:${port}/reset`, event_mask: ['/email'] },
      });
    });

    afterAll(async () => {
      await withWebhook?.close();
      await new Promise((resolve) => webhook.close(resolve));
    });

    it("answers 202 after posting the caller's sub and e-mail to the webhook", async () => {
      const alice = await withWebhook.as('alice');
      const response = await alice.request('/users/me/password-reset', { method: 'POST' });
      expect(response.status).toBe(202);
      expect(received).toEqual([{ sub: 'alice|sub', email: 'alice@example.com' }]);
    });

    it('records changes with the pointers of directory.event_mask erased', async () => {
      const alice = await withWebhook.as('alice');
      const changed = await (await alice.request<User>('/users/me', { method: 'PATCH', json: { display_name: 'Masked' } })).json();
      expect(changed.email).toBe('alice@example.com');
      const event = await withWebhook.database
        .db<DirectoryEventRow>('directory_events')
        .where({ target_id: changed.id, action: 'user.update' })
        .first('before', 'after');
      expect(event?.after).toMatchObject({ display_name: 'Masked' });
      expect(event?.before).not.toHaveProperty('email');
      expect(event?.after).not.toHaveProperty('email');
    });

    it('answers 502 when the webhook fails', async () => {
      answer = 500;
      const alice = await withWebhook.as('alice');
      const response = await alice.request<Problem>('/users/me/password-reset', { method: 'POST' });
      expect(response.status).toBe(502);
      expect((await response.json()).detail).toMatch(/password reset webhook .* answered 500/);
    });
  });
});
