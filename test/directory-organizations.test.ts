// Organizations through the running gateway and directory service, with real tokens on a real
// PostgreSQL: creation (the creator's first read succeeds), slug rules, ETag/If-Match,
// Idempotency-Key, and deletion refused while projects remain, by the policy and by the
// database's RESTRICT when a project appears after the policy allowed the deletion.
import { createPrivateKey } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { expect } from '@jest/globals';
import { SignJWT } from 'jose';
import type { Page } from '../src/directory-service/http-semantics';
import type { Organization } from '../src/directory-service/organization-store';
import { startDirectoryStack, type Caller, type DirectoryStack, type Problem } from './support/directory-stack';
import { waitFor } from './support/wait-for';

let stack: DirectoryStack;
let alice: Caller;
let carol: Caller;
let erin: Caller;

beforeAll(async () => {
  stack = await startDirectoryStack();
  [alice, carol, erin] = await Promise.all([stack.as('alice'), stack.as('carol'), stack.as('erin')]);
});

afterAll(async () => {
  await stack?.close();
});

const db = () => stack.database.db;

describe('creating an organization', () => {
  it('carol creates carolco, becomes its organization-admin, and reads it at once', async () => {
    const created = await carol.request<Organization>('/orgs', { method: 'POST', json: { slug: 'carolco', name: 'Carol Co' } });
    expect(created.status).toBe(201);
    expect(created.headers.get('location')).toBe('/orgs/carolco');
    const etag = created.headers.get('etag');
    expect(etag).toMatch(/^"[\w-]+"$/);
    const body = await created.json();
    expect(body).toEqual({ id: expect.any(String), slug: 'carolco', name: 'Carol Co', created_at: expect.any(String) });

    const read = await carol.request('/orgs/carolco');
    expect(read.status).toBe(200);
    expect(read.headers.get('etag')).toBe(etag);
    expect(await read.json()).toEqual(body);

    const member = await carol.request(`/orgs/carolco/members/${stack.directory!.users.carol}`);
    expect(await member.json()).toMatchObject({ role: 'organization-admin', email: 'carol@example.com' });
    const events = await db()('directory_events').where({ action: 'organization.create', organization_id: body.id });
    expect(events).toEqual([expect.objectContaining({ actor: stack.directory!.users.carol, target_type: 'organization', before: null })]);
  });

  it.each([
    ['upper case', 'CarolCo'],
    ['one character', 'c'],
    ['64 characters', 'c'.repeat(64)],
    ['an underscore', 'carol_co'],
    ['a dot', 'carol.co'],
  ])('refuses a slug with %s (422)', async (_what, slug) => {
    const response = await erin.request<Problem>('/orgs', { method: 'POST', json: { slug, name: 'x' } });
    expect(response.status).toBe(422);
    expect(response.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect((await response.json()).detail).toMatch(/slug/);
  });

  it('refuses an organization without a name (422) and accepts a 2- and a 63-character slug', async () => {
    expect((await erin.request('/orgs', { method: 'POST', json: { slug: 'no-name' } })).status).toBe(422);
    expect((await erin.request('/orgs', { method: 'POST', json: { slug: 'ez', name: 'Two' } })).status).toBe(201);
    expect((await erin.request('/orgs', { method: 'POST', json: { slug: `e${'a'.repeat(62)}`, name: 'Long' } })).status).toBe(201);
  });

  it('answers 409 when the slug is taken, and leaves the existing organization alone', async () => {
    const response = await erin.request<Problem>('/orgs', { method: 'POST', json: { slug: 'acme', name: 'Not Acme' } });
    expect(response.status).toBe(409);
    expect((await response.json()).detail).toBe("the slug 'acme' is taken: choose another");
    expect(await db()('organizations').where({ slug: 'acme' }).pluck('name')).toEqual(['ACME']);
    expect(
      await db()('organization_members').where({ organization_id: stack.directory!.orgs.acme, user_id: stack.directory!.users.erin }),
    ).toEqual([]);
  });

  it('replays a retried POST with the same Idempotency-Key, and refuses the key with another body (422)', async () => {
    const post = (name: string) =>
      erin.request('/orgs', { method: 'POST', headers: { 'idempotency-key': 'erin-create-1' }, json: { slug: 'erin-inc', name } });
    const first = await post('Erin Inc');
    const again = await post('Erin Inc');
    expect(first.status).toBe(201);
    expect(again.status).toBe(201);
    expect(await again.json()).toEqual(await first.json());
    expect((await post('Other')).status).toBe(422);
    expect(await db()('organizations').where({ slug: 'erin-inc' })).toHaveLength(1);
  });

  it("lists the caller's organizations only, page by page", async () => {
    const first = await erin.request<Page<Organization>>('/orgs?limit=2');
    expect(first.status).toBe(200);
    const page1 = await first.json();
    expect(page1.items.map((o) => o.slug)).toEqual([`e${'a'.repeat(62)}`, 'erin-inc']);
    const second = await erin.request<Page<Organization>>(`/orgs?limit=2&cursor=${page1.next_cursor}`);
    const page2 = await second.json();
    expect(page2).toEqual({ items: [expect.objectContaining({ slug: 'ez' })], next_cursor: null });
    const bob = await stack.as('bob');
    expect((await (await bob.request<Page<Organization>>('/orgs')).json()).items.map((o) => o.slug)).toEqual(['acme']);
  });
});

describe("the assertion's organization", () => {
  // The one direct call to the service in this file: the gateway never sends such a request,
  // so only a forged route (an assertion for globex replayed under /orgs/acme) can show it.
  it('must be the organization of the path (403 otherwise)', async () => {
    const now = Math.floor(Date.now() / 1000);
    const signed = (org: string) =>
      readFile(stack.signingKeyFile).then((pem) =>
        new SignJWT({ portcullis_sub: 'dave|sub', org })
          .setProtectedHeader({ alg: 'EdDSA', typ: 'JWT' })
          .setIssuer('portcullis')
          .setAudience('portcullis:organizations')
          .setSubject(stack.directory!.users.dave)
          .setIssuedAt(now)
          .setExpirationTime(now + 60)
          .sign(createPrivateKey(pem)),
      );
    const direct = async (org: string) =>
      fetch(`${stack.service.url}/orgs/acme`, { headers: { 'x-portcullis-assertion': await signed(org) } });
    const replayed = await direct('globex');
    expect(replayed.status).toBe(403);
    expect(((await replayed.json()) as { detail: string }).detail).toBe("the gateway's assertion is for organization 'globex', not 'acme'");
    expect((await direct('acme')).status).toBe(200);
  });
});

describe('changing an organization', () => {
  it('honours If-Match: a stale ETag is 412 and changes nothing; the current one renames', async () => {
    const read = await carol.request('/orgs/carolco');
    const etag = read.headers.get('etag')!;
    const stale = await carol.request('/orgs/carolco', { method: 'PATCH', headers: { 'if-match': '"stale"' }, json: { name: 'Renamed' } });
    expect(stale.status).toBe(412);
    expect(await db()('organizations').where({ slug: 'carolco' }).pluck('name')).toEqual(['Carol Co']);

    const renamed = await carol.request('/orgs/carolco', { method: 'PATCH', headers: { 'if-match': etag }, json: { name: 'Carol & Co' } });
    expect(renamed.status).toBe(200);
    expect(await renamed.json()).toMatchObject({ slug: 'carolco', name: 'Carol & Co' });
    expect(renamed.headers.get('etag')).not.toBe(etag);
    const late = await carol.request('/orgs/carolco', { method: 'DELETE', headers: { 'if-match': etag } });
    expect(late.status).toBe(412);
    expect(await db()('organizations').where({ slug: 'carolco' })).toHaveLength(1);
  });

  it('refuses to change the slug (422: only the name may change)', async () => {
    const response = await carol.request('/orgs/carolco', { method: 'PATCH', json: { slug: 'other' } });
    expect(response.status).toBe(422);
  });
});

describe('deleting an organization', () => {
  it('is refused (409) while projects remain, naming them, and succeeds (204) once they are deleted', async () => {
    const refused = await alice.request<Problem>('/orgs/acme', { method: 'DELETE' });
    expect(refused.status).toBe(409);
    expect((await refused.json()).detail).toBe("organization 'acme' still has 2 projects (api, web); delete them first");

    await db()('projects').where({ organization_id: stack.directory!.orgs.acme }).delete();
    const deleted = await waitFor(
      async () => {
        const response = await alice.request('/orgs/acme', { method: 'DELETE' });
        return response.status === 409 ? false : response;
      },
      { what: 'the gateway to see that acme has no projects left' },
    );
    expect(deleted.status).toBe(204);
    expect(await db()('organizations').where({ slug: 'acme' })).toEqual([]);
    expect(await db()('directory_events').where({ action: 'organization.delete', organization_slug: 'acme' }).pluck('actor')).toEqual([
      stack.directory!.users.alice,
    ]);
  });

  it("maps the database's RESTRICT to the same 409 when a project appears after the policy allowed the deletion", async () => {
    const org = await (await carol.request<Organization>('/orgs', { method: 'POST', json: { slug: 'racing', name: 'Racing' } })).json();
    // Hold the organization's row: the gateway judges (no projects: allowed) and forwards,
    // and the service's DELETE waits here while a project is added.
    const trx = await db().transaction();
    try {
      await trx('organizations').where({ id: org.id }).forUpdate().select('id');
      const deletion = carol.request<Problem>('/orgs/racing', { method: 'DELETE' });
      await waitFor(
        async () => {
          const { rows } = await db().raw<{ rows: { n: number }[] }>(
            `select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`,
          );
          return rows[0]!.n > 0;
        },
        { what: "the service's DELETE to wait for the organization's row" },
      );
      await trx('projects').insert({ organization_id: org.id, slug: 'late', name: 'Late' });
      await trx.commit();

      const response = await deletion;
      expect(response.status).toBe(409);
      const problem = await response.json();
      expect(problem.detail).toBe("organization 'racing' still has 1 project (late); delete them first");
      expect(problem.decision_id).toEqual(expect.any(String));
    } finally {
      if (!trx.isCompleted()) await trx.rollback();
    }
    expect(await db()('organizations').where({ slug: 'racing' })).toHaveLength(1);
    expect(await db()('directory_events').where({ action: 'organization.delete', organization_slug: 'racing' })).toEqual([]);
  });
});
