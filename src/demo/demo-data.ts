// The demo's directory, in the format of `portcullis directory import` and loaded through it,
// only into an empty database: acme (projects api, web, the credential deploy-key; the role
// project-admin, attached to no team yet) and globex (none); alice (admin of acme), bob
// (default member of acme, in team builders whose role grants project:create), dave (verified
// address, no organization). carol is not there: she registers herself in the story.
import type { Knex } from 'knex';
import { parse as parseYaml } from 'yaml';
import { importDirectory } from '../directory-service/directory-import';

export const DEMO_USERS = ['alice', 'bob', 'carol', 'dave'] as const;

/** The JWT `sub` of a demo user. */
export const demoSubject = (user: string) => `demo|${user}`;
export const demoEmail = (user: string) => `${user}@example.com`;
const displayName = (user: string) => user.charAt(0).toUpperCase() + user.slice(1);

/** The profile claims of a demo user's token: what the directory service registers them from. */
export const demoClaims = (user: string) => ({ email: demoEmail(user), email_verified: true, name: displayName(user) });

export const DEMO_DIRECTORY_YAML = `
users:
  - { subject: "demo|alice", email: alice@example.com, email_verified: true, display_name: Alice }
  - { subject: "demo|bob", email: bob@example.com, email_verified: true, display_name: Bob }
  - { subject: "demo|dave", email: dave@example.com, email_verified: true, display_name: Dave }
organizations:
  - slug: acme
    name: Acme Corporation
    members:
      - { user: "demo|alice", role: organization-admin }
      - { user: "demo|bob", role: default }
    roles:
      - { name: project-creator, permissions: ["project:create"] }
      - { name: project-admin, permissions: ["project:*"] }
    teams:
      - { name: builders, members: ["demo|bob"], roles: [project-creator] }
    projects:
      - { slug: api, name: Public API }
      - { slug: web, name: Website }
    credentials:
      - { slug: deploy-key, name: Deploy key }
  - slug: globex
    name: Globex
`;

/** Imports the demo directory; returns false (and writes nothing) when the directory is not empty. */
export async function seedDemoData(db: Knex): Promise<boolean> {
  const { rows } = await db.raw<{ rows: Array<{ empty: boolean }> }>(
    'select not exists (select 1 from users) and not exists (select 1 from organizations) as empty',
  );
  if (!rows[0]?.empty) return false;
  await importDirectory(db, parseYaml(DEMO_DIRECTORY_YAML));
  return true;
}
