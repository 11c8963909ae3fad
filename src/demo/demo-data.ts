// The demo's directory, written only into an empty database: acme (projects api, web, the
// credential deploy-key) and globex (none); alice (admin of acme), bob (default member of acme, in a team whose role
// grants project:create), carol (no organization, one pending invitation).
import type { Knex } from 'knex';

export const DEMO_USERS = ['alice', 'bob', 'carol'] as const;
export type DemoUser = (typeof DEMO_USERS)[number];

/** The JWT `sub` of a demo user. */
export const demoSubject = (user: string) => `demo|${user}`;
export const demoEmail = (user: string) => `${user}@example.com`;

/** Seeds the demo data in one transaction; returns false (and writes nothing) when the directory is not empty. */
export async function seedDemoData(db: Knex): Promise<boolean> {
  return db.transaction(async (trx) => {
    const { rows } = await trx.raw<{ rows: Array<{ empty: boolean }> }>(
      'select not exists (select 1 from users) and not exists (select 1 from organizations) as empty',
    );
    if (!rows[0]?.empty) return false;

    const builtIn = async (name: string) => (await trx('roles').whereNull('organization_id').where({ name }).first('id')).id as string;
    const [admin, member] = [await builtIn('organization-admin'), await builtIn('default')];

    const users: Record<DemoUser, string> = { alice: '', bob: '', carol: '' };
    for (const name of DEMO_USERS) {
      const [row] = await trx('users')
        .insert({ subject: demoSubject(name), email: demoEmail(name), display_name: name[0]!.toUpperCase() + name.slice(1) })
        .returning('id');
      users[name] = row.id;
    }
    const [acme] = await trx('organizations').insert({ slug: 'acme', name: 'Acme Corporation' }).returning('id');
    await trx('organizations').insert({ slug: 'globex', name: 'Globex' });
    await trx('projects').insert([
      { organization_id: acme.id, slug: 'api', name: 'Public API' },
      { organization_id: acme.id, slug: 'web', name: 'Website' },
    ]);
    await trx('credentials').insert({ organization_id: acme.id, slug: 'deploy-key', name: 'Deploy key' });
    await trx('organization_members').insert([
      { organization_id: acme.id, user_id: users.alice, role_id: admin },
      { organization_id: acme.id, user_id: users.bob, role_id: member },
    ]);
    const [creator] = await trx('roles').insert({ organization_id: acme.id, name: 'project-creator', permissions: ['project:create'] }).returning('id');
    const [builders] = await trx('teams').insert({ organization_id: acme.id, name: 'builders' }).returning('id');
    await trx('team_members').insert({ team_id: builders.id, user_id: users.bob });
    await trx('team_roles').insert({ team_id: builders.id, role_id: creator.id });
    await trx('invitations').insert({ organization_id: acme.id, email: demoEmail('carol'), role_id: member });
    return true;
  });
}
