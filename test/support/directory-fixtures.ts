// The directory the integration tests talk about, written with plain SQL the way other
// services would write it: acme (projects api, web; teams whose names need their case and
// percent-encoding; a credential), globex (no projects, a credential), and people in every
// situation the rules R2-R7 distinguish.
import type { Knex } from 'knex';

export interface Directory {
  orgs: { acme: string; globex: string };
  users: { alice: string; bob: string; carol: string; dave: string; erin: string };
  projects: { api: string; web: string; globexSecret: string | undefined };
  teams: { deployers: string; builders: string; coreTeam: string };
  roles: { projectCreator: string };
  credentials: { acmeKey: string; globexKey: string };
  invitations: { carol: string };
}

export async function seedDirectory(db: Knex, options: { globexProject?: boolean } = {}): Promise<Directory> {
  /** Inserts one row and returns its id. */
  const insert = async (table: string, row: Record<string, unknown>) => {
    const [inserted] = await db(table).insert(row).returning<{ id: string }[]>('id');
    return inserted!.id;
  };
  const role = async (name: string) =>
    (await db('roles').whereNull('organization_id').where({ name }).first<{ id: string } | undefined>('id'))!.id;
  const adminRole = await role('organization-admin');
  const defaultRole = await role('default');

  const user = (name: string) => insert('users', { subject: `${name}|sub`, email: `${name}@example.com`, display_name: name });
  const [alice, bob, carol, dave, erin] = [
    await user('alice'),
    await user('bob'),
    await user('carol'),
    await user('dave'),
    await user('erin'),
  ];

  const org = (slug: string) => insert('organizations', { slug, name: slug.toUpperCase() });
  const acme = await org('acme');
  const globex = await org('globex');

  const project = (organizationId: string, slug: string) => insert('projects', { organization_id: organizationId, slug, name: slug });
  const api = await project(acme, 'api');
  const web = await project(acme, 'web');
  const globexSecret = options.globexProject ? await project(globex, 'secret') : undefined;

  await db('organization_members').insert([
    { organization_id: acme, user_id: alice, role_id: adminRole },
    { organization_id: acme, user_id: bob, role_id: defaultRole },
    { organization_id: globex, user_id: dave, role_id: adminRole },
    { organization_id: acme, user_id: dave, role_id: defaultRole },
  ]);

  const projectCreator = await insert('roles', { organization_id: acme, name: 'project-creator', permissions: ['project:create'] });
  const deployers = await insert('teams', { organization_id: acme, name: 'deployers' });
  await db('team_members').insert({ team_id: deployers, user_id: bob });
  await db('team_roles').insert({ team_id: deployers, role_id: projectCreator });
  const team = (name: string) => insert('teams', { organization_id: acme, name });
  const builders = await team('Builders');
  const coreTeam = await team('core team');

  const credential = (organizationId: string, slug: string) => insert('credentials', { organization_id: organizationId, slug, name: slug });
  const acmeKey = await credential(acme, 'Key_AbC');
  const globexKey = await credential(globex, 'globex-key');

  const invitation = await insert('invitations', { organization_id: acme, email: 'carol@example.com', role_id: defaultRole });

  return {
    orgs: { acme, globex },
    users: { alice, bob, carol, dave, erin },
    projects: { api, web, globexSecret },
    teams: { deployers, builders, coreTeam },
    roles: { projectCreator },
    credentials: { acmeKey, globexKey },
    invitations: { carol: invitation },
  };
}
