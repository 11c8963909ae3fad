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
  const role = async (name: string) => (await db('roles').whereNull('organization_id').where({ name }).first('id')).id as string;
  const adminRole = await role('organization-admin');
  const defaultRole = await role('default');

  const user = async (name: string) =>
    (
      await db('users')
        .insert({ subject: `${name}|sub`, email: `${name}@example.com`, display_name: name })
        .returning('id')
    )[0].id as string;
  const [alice, bob, carol, dave, erin] = [
    await user('alice'),
    await user('bob'),
    await user('carol'),
    await user('dave'),
    await user('erin'),
  ];

  const org = async (slug: string) =>
    (await db('organizations').insert({ slug, name: slug.toUpperCase() }).returning('id'))[0].id as string;
  const acme = await org('acme');
  const globex = await org('globex');

  const project = async (organizationId: string, slug: string) =>
    (await db('projects').insert({ organization_id: organizationId, slug, name: slug }).returning('id'))[0].id as string;
  const api = await project(acme, 'api');
  const web = await project(acme, 'web');
  const globexSecret = options.globexProject ? await project(globex, 'secret') : undefined;

  await db('organization_members').insert([
    { organization_id: acme, user_id: alice, role_id: adminRole },
    { organization_id: acme, user_id: bob, role_id: defaultRole },
    { organization_id: globex, user_id: dave, role_id: adminRole },
    { organization_id: acme, user_id: dave, role_id: defaultRole },
  ]);

  const projectCreator = (
    await db('roles')
      .insert({ organization_id: acme, name: 'project-creator', permissions: ['project:create'] })
      .returning('id')
  )[0].id as string;
  const deployers = (await db('teams').insert({ organization_id: acme, name: 'deployers' }).returning('id'))[0].id as string;
  await db('team_members').insert({ team_id: deployers, user_id: bob });
  await db('team_roles').insert({ team_id: deployers, role_id: projectCreator });
  const team = async (name: string) => (await db('teams').insert({ organization_id: acme, name }).returning('id'))[0].id as string;
  const builders = await team('Builders');
  const coreTeam = await team('core team');

  const credential = async (organizationId: string, slug: string) =>
    (await db('credentials').insert({ organization_id: organizationId, slug, name: slug }).returning('id'))[0].id as string;
  const acmeKey = await credential(acme, 'Key_AbC');
  const globexKey = await credential(globex, 'globex-key');

  const invitation = (
    await db('invitations').insert({ organization_id: acme, email: 'carol@example.com', role_id: defaultRole }).returning('id')
  )[0].id as string;

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
