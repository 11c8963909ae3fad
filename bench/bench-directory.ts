// A synthetic directory of any size, written with set-based SQL (generate_series) so that
// a million rows take seconds. Ids are derived from the row numbers (md5 -> uuid), so the
// benchmarks can address users, organizations and projects without reading them back.
import type { Knex } from 'knex';

export interface DirectorySize {
  users: number;
  organizations: number;
  /** Organizations each user belongs to (admin of the first, default role in the others). */
  membershipsPerUser: number;
  projectsPerOrganization: number;
  teamsPerOrganization: number;
}

/** The k-th organization (0-based) of user i (1-based). */
export function organizationOf(size: DirectorySize, user: number, k: number): number {
  return (((user - 1) * size.membershipsPerUser + k) % size.organizations) + 1;
}

export async function seedBenchDirectory(db: Knex, size: DirectorySize, log: (line: string) => void = () => undefined): Promise<void> {
  const { users: U, organizations: O, membershipsPerUser: M, projectsPerOrganization: P, teamsPerOrganization: T } = size;
  if (M > O) throw new Error('membershipsPerUser must not exceed organizations');
  const org = (expr: string) => `md5('o' || (${expr}))::uuid`;
  const orgOf = (k: string) => org(`((i - 1) * ${M} + ${k}) % ${O} + 1`);
  const steps: Array<[string, string]> = [
    [
      'users',
      `insert into users (id, subject, email, display_name)
       select md5('u' || i)::uuid, 'user-' || i, 'user-' || i || '@example.com', 'User ' || i from generate_series(1, ${U}) i`,
    ],
    [
      'organizations',
      `insert into organizations (id, slug, name) select ${org('i')}, 'org-' || i, 'Org ' || i from generate_series(1, ${O}) i`,
    ],
    [
      'roles',
      `insert into roles (id, organization_id, name, permissions)
       select md5('r' || i)::uuid, ${org('i')}, 'deployer', '{pipeline:read,pipeline:run,project:create}' from generate_series(1, ${O}) i`,
    ],
    [
      'teams',
      `insert into teams (id, organization_id, name)
       select md5('t' || i || '-' || t)::uuid, ${org('i')}, 'team-' || t from generate_series(1, ${O}) i, generate_series(1, ${T}) t`,
    ],
    [
      'team roles',
      `insert into team_roles (team_id, role_id) select md5('t' || i || '-1')::uuid, md5('r' || i)::uuid from generate_series(1, ${O}) i`,
    ],
    [
      'memberships',
      `insert into organization_members (organization_id, user_id, role_id)
       select ${orgOf('k')}, md5('u' || i)::uuid,
              case when k = 0 then (select id from roles where organization_id is null and name = 'organization-admin')
                   else (select id from roles where organization_id is null and name = 'default') end
       from generate_series(1, ${U}) i, generate_series(0, ${M - 1}) k`,
    ],
    // Every user is in the first team of each of their organizations but the first.
    [
      'team members',
      `insert into team_members (team_id, user_id)
       select md5('t' || (((i - 1) * ${M} + k) % ${O} + 1) || '-1')::uuid, md5('u' || i)::uuid
       from generate_series(1, ${U}) i, generate_series(1, ${Math.max(0, M - 1)}) k where ${M} > 1`,
    ],
    [
      'projects',
      `insert into projects (id, organization_id, slug, name)
       select md5('p' || i || '-' || p)::uuid, ${org('i')}, 'project-' || p, 'Project ' || p from generate_series(1, ${O}) i, generate_series(1, ${P}) p`,
    ],
  ];
  for (const [name, sql] of steps) {
    const started = Date.now();
    await db.raw(sql);
    log(`  seeded ${name} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }
  // Vacuum too: a fresh bulk load has no visibility map, so index-only scans would not apply yet.
  await db.raw('vacuum analyze');
}
