// Projects through the running gateway and directory service (the gateway's `projects`
// service), with real tokens on a real PostgreSQL: the registry's CRUD with ETag, If-Match and
// Idempotency-Key, slugs, and the organization that becomes deletable as its last project goes.
import { expect } from '@jest/globals';
import type { Page } from '../src/directory-service/http-semantics';
import type { Project } from '../src/directory-service/project-store';
import { startDirectoryStack, type Caller, type DirectoryStack, type Problem } from './support/directory-stack';
import { waitFor } from './support/wait-for';

let stack: DirectoryStack;
let alice: Caller;
let dave: Caller;
let carol: Caller;

const db = () => stack.database.db;

beforeAll(async () => {
  stack = await startDirectoryStack();
  [alice, dave, carol] = await Promise.all([stack.as('alice'), stack.as('dave'), stack.as('carol')]);
});

afterAll(async () => {
  await stack?.close();
});

describe('the project registry', () => {
  it('registers, reads by slug or id, renames under If-Match, lists and deletes a project', async () => {
    const created = await alice.request<Project>('/orgs/acme/projects', { method: 'POST', json: { slug: 'mobile', name: 'Mobile App' } });
    expect(created.status).toBe(201);
    const project = await created.json();
    expect(project).toEqual({ id: expect.any(String), slug: 'mobile', name: 'Mobile App' });
    expect(created.headers.get('location')).toBe('/orgs/acme/projects/mobile');
    const etag = created.headers.get('etag')!;
    const bySlug = await dave.request<Project>('/orgs/acme/projects/mobile');
    expect(bySlug.status).toBe(200);
    expect(bySlug.headers.get('etag')).toBe(etag);
    expect(await bySlug.json()).toEqual(project);
    expect(await (await dave.request<Project>(`/orgs/acme/projects/${project.id}`)).json()).toEqual(project);

    expect(
      (await alice.request('/orgs/acme/projects/mobile', { method: 'PATCH', json: { name: 'Phone' }, headers: { 'if-match': '"stale"' } }))
        .status,
    ).toBe(412);
    const renamed = await alice.request<Project>('/orgs/acme/projects/mobile', {
      method: 'PATCH',
      json: { name: 'Phone', slug: 'phone' },
      headers: { 'if-match': etag },
    });
    expect(renamed.status).toBe(200);
    expect(await renamed.json()).toEqual({ id: project.id, slug: 'phone', name: 'Phone' });

    const slugs: string[] = [];
    let cursor: string | null = null;
    do {
      const page = await (await dave.request<Page<Project>>(`/orgs/acme/projects?limit=1${cursor ? `&cursor=${cursor}` : ''}`)).json();
      expect(page.items.length).toBeLessThanOrEqual(1);
      slugs.push(...page.items.map((item) => item.slug));
      cursor = page.next_cursor;
    } while (cursor !== null);
    expect(slugs).toEqual(['api', 'phone', 'web']);

    expect((await alice.request('/orgs/acme/projects/phone', { method: 'DELETE' })).status).toBe(204);
    expect((await dave.request('/orgs/acme/projects/phone')).status).toBe(404);
    const actions = await db()('directory_events').where({ target_id: project.id }).orderBy('id').pluck('action');
    expect(actions).toEqual(['project.create', 'project.update', 'project.delete']);
  });

  it('keeps slugs unique in the organization (409) and well-formed (422), the name defaulting to the slug', async () => {
    const taken = await alice.request<Problem>('/orgs/acme/projects', { method: 'POST', json: { slug: 'api', name: 'Another API' } });
    expect(taken.status).toBe(409);
    expect((await taken.json()).detail).toBe("a project with slug 'api' already exists in this organization");
    for (const slug of ['API', 'a', 'x'.repeat(64), 'my_project', '0b5c4a8e-9a43-4a4c-9d39-2a1b3c4d5e6f']) {
      expect((await alice.request('/orgs/acme/projects', { method: 'POST', json: { slug } })).status).toBe(422);
    }
    const unnamed = await alice.request('/orgs/acme/projects', { method: 'POST', json: { slug: 'docs' } });
    expect(await unnamed.json()).toMatchObject({ slug: 'docs', name: 'docs' });
    expect((await alice.request('/orgs/acme/projects/docs', { method: 'PATCH', json: { slug: 'web' } })).status).toBe(409);
    expect((await alice.request('/orgs/acme/projects/docs', { method: 'DELETE' })).status).toBe(204);
  });

  it('replays a POST with the same Idempotency-Key instead of registering twice', async () => {
    const init = { method: 'POST', json: { slug: 'cli', name: 'CLI' }, headers: { 'idempotency-key': 'register-cli' } };
    const first = await alice.request('/orgs/acme/projects', init);
    const second = await alice.request('/orgs/acme/projects', init);
    expect([first.status, second.status]).toEqual([201, 201]);
    expect(await second.json()).toEqual(await first.json());
    expect(await db()('projects').where({ slug: 'cli' })).toHaveLength(1);
    expect((await alice.request('/orgs/acme/projects/cli', { method: 'DELETE' })).status).toBe(204);
  });

  it('needs project:create: a plain member is refused by the policy (403)', async () => {
    expect((await dave.request('/orgs/acme/projects', { method: 'POST', json: { slug: 'daves' } })).status).toBe(403);
  });
});

describe('the last project', () => {
  it('once deleted, makes the organization deletable at once through the gateway', async () => {
    expect((await carol.request('/orgs', { method: 'POST', json: { slug: 'carolco', name: 'Carol Co' } })).status).toBe(201);
    for (const slug of ['alpha', 'beta']) {
      expect((await carol.request('/orgs/carolco/projects', { method: 'POST', json: { slug } })).status).toBe(201);
    }
    const refused = await carol.request<Problem>('/orgs/carolco', { method: 'DELETE' });
    expect(refused.status).toBe(409);
    expect((await refused.json()).detail).toBe("organization 'carolco' still has 2 projects (alpha, beta); delete them first");

    expect((await carol.request('/orgs/carolco/projects/alpha', { method: 'DELETE' })).status).toBe(204);
    await waitFor(
      async () => (await (await carol.request<Problem>('/orgs/carolco', { method: 'DELETE' })).json()).detail.includes('1 project (beta)'),
      {
        timeoutMs: 1000,
        what: 'the refusal to name the one project left',
      },
    );

    expect((await carol.request('/orgs/carolco/projects/beta', { method: 'DELETE' })).status).toBe(204);
    const deletedAt = Date.now();
    const statuses: number[] = [];
    await waitFor(
      async () => {
        const status = (await carol.request('/orgs/carolco', { method: 'DELETE' })).status;
        statuses.push(status);
        return status === 204;
      },
      { timeoutMs: 1000, what: 'DELETE /orgs/carolco to be allowed' },
    );
    expect(Date.now() - deletedAt).toBeLessThan(1000);
    expect(statuses.every((status) => status === 409 || status === 204)).toBe(true);
    expect(await db()('organizations').where({ slug: 'carolco' })).toEqual([]);
  });
});
