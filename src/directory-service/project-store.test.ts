// ProjectStore against a real PostgreSQL: slugs unique per organization, resolution like the
// gateway's (slug or id, never another organization's), and the organization's RESTRICT.
import type { Knex } from 'knex';
import { ConflictError } from '../base/errors';
import { createTestDatabase, type TestDatabase } from '../../test/support/test-database';
import { ProjectStore, toProject } from './project-store';

let database: TestDatabase;
let db: Knex;
let store: ProjectStore;

beforeAll(async () => {
  database = await createTestDatabase();
  db = database.db;
  store = new ProjectStore(db);
});

afterAll(async () => {
  await database.drop();
});

async function rejected(promise: Promise<unknown>, message: string): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (thrown: unknown) => thrown,
  );
  expect(error).toBeInstanceOf(ConflictError);
  expect((error as Error).message).toBe(message);
}

let counter = 0;
const organization = async () =>
  (
    await db('organizations')
      .insert({ slug: `projects-org-${++counter}`, name: 'org' })
      .returning<{ id: string }[]>('id')
  )[0]!.id;

describe('ProjectStore', () => {
  it('registers slugs once per organization (409), renames and changes slugs, and finds by slug or id', async () => {
    const org = await organization();
    const api = await store.create(org, { slug: 'api', name: 'API' });
    expect(toProject(api)).toEqual({ id: api.id, slug: 'api', name: 'API' });
    await rejected(store.create(org, { slug: 'api', name: 'again' }), "a project with slug 'api' already exists in this organization");
    await expect(store.create(await organization(), { slug: 'api', name: 'elsewhere' })).resolves.toMatchObject({ slug: 'api' });

    const web = await store.create(org, { slug: 'web', name: null });
    await rejected(store.update(web, { slug: 'api' }), "a project with slug 'api' already exists in this organization");
    expect(await store.update(web, { slug: 'site', name: 'Site' })).toMatchObject({ id: web.id, slug: 'site', name: 'Site' });
    expect((await store.find(org, 'site'))?.id).toBe(web.id);
    expect((await store.find(org, web.id))?.id).toBe(web.id);
    expect(await store.find(org, 'web')).toBeUndefined();
    expect(await store.find(await organization(), api.id)).toBeUndefined();
  });

  it('keeps the organization from being deleted until its last project is gone', async () => {
    const org = await organization();
    const only = await store.create(org, { slug: 'only', name: 'Only' });
    await expect(db('organizations').where({ id: org }).delete()).rejects.toMatchObject({ code: '23001' }); // restrict_violation;
    await store.delete(only);
    expect(await db('organizations').where({ id: org }).delete()).toBe(1);
  });

  it('answers a registration in an organization deleted meanwhile with 409', async () => {
    const org = await organization();
    await db('organizations').where({ id: org }).delete();
    await rejected(store.create(org, { slug: 'late', name: 'Late' }), 'the organization no longer exists');
  });
});
