import type { RouteConfig } from '../config/config-schema';
import { defaultRoutes } from './default-routes';
import type { RouteDefinition } from './route';
import { expandRouteConfig, RouteTable } from './route-table';

type Expected = [method: string, path: string, action: string, service: string, resource: Record<string, string>, route: string];

// Design §3.3, request by request: the resource is what the policy sees as input.resource.
const EXPECTED: Expected[] = [
  ['GET', '/orgs', 'organization:list', 'organizations', { type: 'organization' }, '/orgs'],
  ['POST', '/orgs', 'organization:create', 'organizations', { type: 'organization' }, '/orgs'],
  ['GET', '/orgs/acme', 'organization:read', 'organizations', { type: 'organization', org: 'acme' }, '/orgs/{org}'],
  ['PATCH', '/orgs/acme', 'organization:update', 'organizations', { type: 'organization', org: 'acme' }, '/orgs/{org}'],
  ['DELETE', '/orgs/acme', 'organization:delete', 'organizations', { type: 'organization', org: 'acme' }, '/orgs/{org}'],

  ['GET', '/orgs/acme/members', 'member:read', 'organizations', { type: 'member', org: 'acme' }, '/orgs/{org}/members'],
  ['POST', '/orgs/acme/members', 'member:invite', 'organizations', { type: 'member', org: 'acme' }, '/orgs/{org}/members'],
  [
    'GET',
    '/orgs/acme/members/u1',
    'member:read',
    'organizations',
    { type: 'member', org: 'acme', user: 'u1' },
    '/orgs/{org}/members/{user}',
  ],
  [
    'PATCH',
    '/orgs/acme/members/u1',
    'member:update',
    'organizations',
    { type: 'member', org: 'acme', user: 'u1' },
    '/orgs/{org}/members/{user}',
  ],
  [
    'DELETE',
    '/orgs/acme/members/u1',
    'member:remove',
    'organizations',
    { type: 'member', org: 'acme', user: 'u1' },
    '/orgs/{org}/members/{user}',
  ],
  ['DELETE', '/orgs/acme/members/me', 'member:leave', 'organizations', { type: 'member', org: 'acme' }, '/orgs/{org}/members/me'],

  ['GET', '/orgs/acme/invitations', 'member:read', 'organizations', { type: 'invitation', org: 'acme' }, '/orgs/{org}/invitations'],
  ['POST', '/orgs/acme/invitations', 'member:invite', 'organizations', { type: 'invitation', org: 'acme' }, '/orgs/{org}/invitations'],
  [
    'GET',
    '/orgs/acme/invitations/i1',
    'member:read',
    'organizations',
    { type: 'invitation', org: 'acme', invitation: 'i1' },
    '/orgs/{org}/invitations/{invitation}',
  ],
  [
    'DELETE',
    '/orgs/acme/invitations/i1',
    'member:invite',
    'organizations',
    { type: 'invitation', org: 'acme', invitation: 'i1' },
    '/orgs/{org}/invitations/{invitation}',
  ],

  ['GET', '/orgs/acme/teams', 'team:read', 'organizations', { type: 'team', org: 'acme' }, '/orgs/{org}/teams'],
  ['POST', '/orgs/acme/teams', 'team:create', 'organizations', { type: 'team', org: 'acme' }, '/orgs/{org}/teams'],
  ['GET', '/orgs/acme/teams/ops', 'team:read', 'organizations', { type: 'team', org: 'acme', team: 'ops' }, '/orgs/{org}/teams/{team}'],
  ['PATCH', '/orgs/acme/teams/ops', 'team:update', 'organizations', { type: 'team', org: 'acme', team: 'ops' }, '/orgs/{org}/teams/{team}'],
  ['PUT', '/orgs/acme/teams/ops', 'team:update', 'organizations', { type: 'team', org: 'acme', team: 'ops' }, '/orgs/{org}/teams/{team}'],
  [
    'DELETE',
    '/orgs/acme/teams/ops',
    'team:delete',
    'organizations',
    { type: 'team', org: 'acme', team: 'ops' },
    '/orgs/{org}/teams/{team}',
  ],
  [
    'GET',
    '/orgs/acme/teams/ops/members',
    'team:read',
    'organizations',
    { type: 'team', org: 'acme', team: 'ops' },
    '/orgs/{org}/teams/{team}/members',
  ],
  [
    'POST',
    '/orgs/acme/teams/ops/members',
    'team:update',
    'organizations',
    { type: 'team', org: 'acme', team: 'ops' },
    '/orgs/{org}/teams/{team}/members',
  ],
  [
    'PATCH',
    '/orgs/acme/teams/ops/members',
    'team:update',
    'organizations',
    { type: 'team', org: 'acme', team: 'ops' },
    '/orgs/{org}/teams/{team}/members',
  ],
  [
    'PUT',
    '/orgs/acme/teams/ops/members',
    'team:update',
    'organizations',
    { type: 'team', org: 'acme', team: 'ops' },
    '/orgs/{org}/teams/{team}/members',
  ],
  [
    'GET',
    '/orgs/acme/teams/ops/members/u1',
    'team:read',
    'organizations',
    { type: 'team', org: 'acme', team: 'ops', user: 'u1' },
    '/orgs/{org}/teams/{team}/members/{user}',
  ],
  [
    'PUT',
    '/orgs/acme/teams/ops/members/u1',
    'team:update',
    'organizations',
    { type: 'team', org: 'acme', team: 'ops', user: 'u1' },
    '/orgs/{org}/teams/{team}/members/{user}',
  ],
  [
    'DELETE',
    '/orgs/acme/teams/ops/members/u1',
    'team:update',
    'organizations',
    { type: 'team', org: 'acme', team: 'ops', user: 'u1' },
    '/orgs/{org}/teams/{team}/members/{user}',
  ],
  [
    'GET',
    '/orgs/acme/teams/ops/roles',
    'team:read',
    'organizations',
    { type: 'team', org: 'acme', team: 'ops' },
    '/orgs/{org}/teams/{team}/roles',
  ],
  [
    'PUT',
    '/orgs/acme/teams/ops/roles/deployer',
    'team:update',
    'organizations',
    { type: 'team', org: 'acme', team: 'ops', role: 'deployer' },
    '/orgs/{org}/teams/{team}/roles/{role}',
  ],
  [
    'DELETE',
    '/orgs/acme/teams/ops/roles/deployer',
    'team:update',
    'organizations',
    { type: 'team', org: 'acme', team: 'ops', role: 'deployer' },
    '/orgs/{org}/teams/{team}/roles/{role}',
  ],

  ['GET', '/orgs/acme/roles', 'role:read', 'organizations', { type: 'role', org: 'acme' }, '/orgs/{org}/roles'],
  ['POST', '/orgs/acme/roles', 'role:create', 'organizations', { type: 'role', org: 'acme' }, '/orgs/{org}/roles'],
  [
    'GET',
    '/orgs/acme/roles/deployer',
    'role:read',
    'organizations',
    { type: 'role', org: 'acme', role: 'deployer' },
    '/orgs/{org}/roles/{role}',
  ],
  [
    'PATCH',
    '/orgs/acme/roles/deployer',
    'role:update',
    'organizations',
    { type: 'role', org: 'acme', role: 'deployer' },
    '/orgs/{org}/roles/{role}',
  ],
  [
    'PUT',
    '/orgs/acme/roles/deployer',
    'role:update',
    'organizations',
    { type: 'role', org: 'acme', role: 'deployer' },
    '/orgs/{org}/roles/{role}',
  ],
  [
    'DELETE',
    '/orgs/acme/roles/deployer',
    'role:delete',
    'organizations',
    { type: 'role', org: 'acme', role: 'deployer' },
    '/orgs/{org}/roles/{role}',
  ],

  ['GET', '/orgs/acme/events', 'audit:read', 'organizations', { type: 'audit', org: 'acme' }, '/orgs/{org}/events'],

  [
    'POST',
    '/invitations/i1/accept',
    'invitation:accept',
    'organizations',
    { type: 'invitation', invitation: 'i1' },
    '/invitations/{invitation}/accept',
  ],

  ['GET', '/orgs/acme/projects', 'project:read', 'projects', { type: 'project', org: 'acme' }, '/orgs/{org}/projects'],
  ['POST', '/orgs/acme/projects', 'project:create', 'projects', { type: 'project', org: 'acme' }, '/orgs/{org}/projects'],
  [
    'GET',
    '/orgs/acme/projects/api',
    'project:read',
    'projects',
    { type: 'project', org: 'acme', project: 'api' },
    '/orgs/{org}/projects/{project}',
  ],
  [
    'PATCH',
    '/orgs/acme/projects/api',
    'project:update',
    'projects',
    { type: 'project', org: 'acme', project: 'api' },
    '/orgs/{org}/projects/{project}',
  ],
  [
    'PUT',
    '/orgs/acme/projects/api',
    'project:update',
    'projects',
    { type: 'project', org: 'acme', project: 'api' },
    '/orgs/{org}/projects/{project}',
  ],
  [
    'DELETE',
    '/orgs/acme/projects/api',
    'project:delete',
    'projects',
    { type: 'project', org: 'acme', project: 'api' },
    '/orgs/{org}/projects/{project}',
  ],
  [
    'GET',
    '/orgs/acme/projects/api/pipelines',
    'pipeline:read',
    'projects',
    { type: 'pipeline', org: 'acme', project: 'api' },
    '/orgs/{org}/projects/{project}/pipelines',
  ],
  [
    'POST',
    '/orgs/acme/projects/api/pipelines',
    'pipeline:run',
    'projects',
    { type: 'pipeline', org: 'acme', project: 'api' },
    '/orgs/{org}/projects/{project}/pipelines',
  ],
  [
    'GET',
    '/orgs/acme/projects/api/pipelines/42/logs',
    'pipeline:read',
    'projects',
    { type: 'pipeline', org: 'acme', project: 'api' },
    '/orgs/{org}/projects/{project}/pipelines/*',
  ],
  [
    'POST',
    '/orgs/acme/projects/api/pipelines/42',
    'pipeline:run',
    'projects',
    { type: 'pipeline', org: 'acme', project: 'api' },
    '/orgs/{org}/projects/{project}/pipelines/*',
  ],

  ['GET', '/orgs/acme/credentials', 'credential:read', 'credentials', { type: 'credential', org: 'acme' }, '/orgs/{org}/credentials'],
  ['POST', '/orgs/acme/credentials', 'credential:create', 'credentials', { type: 'credential', org: 'acme' }, '/orgs/{org}/credentials'],
  [
    'GET',
    '/orgs/acme/credentials/aws',
    'credential:read',
    'credentials',
    { type: 'credential', org: 'acme', credential: 'aws' },
    '/orgs/{org}/credentials/{credential}',
  ],
  [
    'PATCH',
    '/orgs/acme/credentials/aws',
    'credential:update',
    'credentials',
    { type: 'credential', org: 'acme', credential: 'aws' },
    '/orgs/{org}/credentials/{credential}',
  ],
  [
    'PUT',
    '/orgs/acme/credentials/aws',
    'credential:update',
    'credentials',
    { type: 'credential', org: 'acme', credential: 'aws' },
    '/orgs/{org}/credentials/{credential}',
  ],
  [
    'DELETE',
    '/orgs/acme/credentials/aws',
    'credential:delete',
    'credentials',
    { type: 'credential', org: 'acme', credential: 'aws' },
    '/orgs/{org}/credentials/{credential}',
  ],

  ['PUT', '/users/me', 'profile:register', 'users', { type: 'profile' }, '/users/me'],
  ['GET', '/users/me', 'profile:read', 'users', { type: 'profile' }, '/users/me'],
  ['PATCH', '/users/me', 'profile:update', 'users', { type: 'profile' }, '/users/me'],
  ['PUT', '/users/me/picture', 'profile:update', 'users', { type: 'profile' }, '/users/me/picture'],
  ['POST', '/users/me/password-reset', 'profile:update', 'users', { type: 'profile' }, '/users/me/password-reset'],
  ['GET', '/users/u1', 'profile:read', 'users', { type: 'profile', user: 'u1' }, '/users/{user}'],
  ['PATCH', '/users/u1', 'profile:update', 'users', { type: 'profile', user: 'u1' }, '/users/{user}'],
  ['GET', '/users/u1/picture', 'profile:read', 'users', { type: 'profile', user: 'u1' }, '/users/{user}/picture'],
  // `me` is a literal only where a route spells it: reading a member named `me` is an ordinary lookup.
  [
    'GET',
    '/orgs/acme/members/me',
    'member:read',
    'organizations',
    { type: 'member', org: 'acme', user: 'me' },
    '/orgs/{org}/members/{user}',
  ],
];

describe('default routes', () => {
  const table = new RouteTable();

  it.each(EXPECTED)('%s %s -> %s on %s', (method, path, action, service, resource, route) => {
    const { type, ...params } = resource;
    expect(table.match(method, path)).toEqual({
      route,
      path,
      action,
      service,
      params,
      resource: { type, ...params },
      checkedByUpstream: [],
    });
  });

  it('has an expectation for every default route and no other route', () => {
    const exercised = new Set(EXPECTED.map(([method, path]) => `${method} ${table.match(method, path)?.route}`));
    expect(new Set(defaultRoutes.map((route) => `${route.method} ${route.path}`))).toEqual(exercised);
    expect(exercised.size).toBe(defaultRoutes.length);
  });

  it('declares each method and pattern once', () => {
    expect(new Set(defaultRoutes.map((route) => `${route.method} ${route.path}`)).size).toBe(defaultRoutes.length);
  });
});

describe('RouteTable.match', () => {
  const table = new RouteTable();

  it.each([
    ['GET', '/'],
    ['PUT', '/orgs'],
    ['PUT', '/orgs/acme'],
    ['POST', '/orgs/acme'],
    ['HEAD', '/orgs/acme'],
    ['OPTIONS', '/orgs/acme'],
    ['get', '/orgs/acme'],
    ['GET', '/orgs/acme/unknown'],
    ['GET', '/orgs/acme/projects/api/deployments'],
    ['GET', '/orgs/acme/teams/ops/members/u1/extra'],
    ['DELETE', '/orgs/acme/teams/ops/members'],
    ['DELETE', '/users/me'],
    ['DELETE', '/users/u1'],
    ['PUT', '/users/u1/picture'],
    ['GET', '/orgs/acme/members/me/extra'],
    ['POST', '/users/u1/password-reset'],
    ['GET', '/invitations/i1/accept'],
    ['GET', '/admin'],
    ['GET', 'orgs/acme'],
    ['GET', ''],
  ])('does not match %s %j', (method, path) => {
    expect(table.match(method, path)).toBeUndefined();
  });

  it('prefers a literal segment over a parameter', () => {
    expect(table.match('GET', '/users/me')?.route).toBe('/users/me');
    expect(table.match('GET', '/users/mee')?.route).toBe('/users/{user}');
  });

  it('backtracks to a parameter when the literal branch has no route', () => {
    const routes = new RouteTable(
      [
        { method: 'GET', path: '/things/special/a', action: 'thing:read', service: 's' },
        { method: 'GET', path: '/things/{thing}/b', action: 'thing:list', service: 's' },
      ],
      [],
    );
    expect(routes.match('GET', '/things/special/b')?.params).toEqual({ thing: 'special' });
    expect(routes.match('GET', '/things/special/a')?.params).toEqual({});
  });

  it('lets a trailing wildcard match one or more segments but not zero', () => {
    const routes = new RouteTable([{ method: 'GET', path: '/files/*', action: 'file:read', service: 's' }], []);
    expect(routes.match('GET', '/files/a')?.route).toBe('/files/*');
    expect(routes.match('GET', '/files/a/b/c')?.route).toBe('/files/*');
    expect(routes.match('GET', '/files')).toBeUndefined();
  });

  it('prefers an exact route over a wildcard at the same depth', () => {
    const pipelines = table.match('GET', '/orgs/acme/projects/api/pipelines');
    expect(pipelines?.route).toBe('/orgs/{org}/projects/{project}/pipelines');
  });

  it("builds the resource in PostgreSQL's jsonb key order (shorter names first, then by bytes), the order the decision record writes", () => {
    expect(Object.keys(table.match('GET', '/orgs/acme/projects/api')!.resource)).toEqual(['org', 'type', 'project']);
    expect(Object.keys(table.match('GET', '/orgs/acme/teams/core')!.resource)).toEqual(['org', 'team', 'type']);
    expect(Object.keys(table.match('GET', '/orgs/acme/members/u1')!.resource)).toEqual(['org', 'type', 'user']);
    const custom = new RouteTable([{ method: 'GET', path: '/x/{zz}/{b}/{a}/{typf}', action: 'x:read', service: 'x' }]);
    const resource = custom.match('GET', '/x/1/2/3/4')!.resource;
    expect(Object.keys(resource)).toEqual(['a', 'b', 'zz', 'type', 'typf']);
    expect(resource).toEqual({ type: 'x', zz: '1', b: '2', a: '3', typf: '4' });
  });

  it('gives the policy percent-decoded parameters and keeps the encoded path', () => {
    const match = table.match('GET', '/orgs/caf%C3%A9/teams/core%20team');
    expect(match?.resource).toEqual({ type: 'team', org: 'café', team: 'core team' });
    expect(match?.params).toEqual({ org: 'café', team: 'core team' });
    expect(match?.path).toBe('/orgs/caf%C3%A9/teams/core%20team');
  });

  it('matches literal segments case-insensitively and keeps the case of parameters', () => {
    const match = table.match('GET', '/ORGS/Acme/Credentials/Key_AbC');
    expect(match).toMatchObject({
      route: '/orgs/{org}/credentials/{credential}',
      resource: { type: 'credential', org: 'Acme', credential: 'Key_AbC' },
    });
    expect(table.match('GET', '/Users/ME')?.route).toBe('/users/me');
    expect(table.match('GET', '/users/Me')?.route).toBe('/users/me');
  });

  it("spells the judged path with the route's literals and the parameters as sent", () => {
    expect(table.match('GET', '/ORGS/Acme/Teams/Builders/MEMBERS')?.path).toBe('/orgs/Acme/teams/Builders/members');
    expect(table.match('POST', '/Orgs/acme/Projects/Web/PIPELINES/Run-1/Logs')?.path).toBe('/orgs/acme/projects/Web/pipelines/Run-1/Logs');
    expect(table.match('POST', '/ORGS')?.path).toBe('/orgs');
  });

  it('folds only letters outside escapes when matching a literal', () => {
    const routes = new RouteTable([{ method: 'GET', path: '/caf%C3%A9/x', action: 'a:read', service: 's' }], []);
    expect(routes.match('GET', '/CAF%C3%A9/X')?.path).toBe('/caf%C3%A9/x');
  });
});

describe('RouteTable.match, repeated', () => {
  it('answers a repeated path with the same frozen match, and another spelling or method with its own', () => {
    const table = new RouteTable();
    const first = table.match('GET', '/orgs/acme/projects/api')!;
    expect(table.match('GET', '/orgs/acme/projects/api')).toBe(first);
    expect(Object.isFrozen(first) && Object.isFrozen(first.resource) && Object.isFrozen(first.params)).toBe(true);
    expect(() => Object.assign(first.resource, { org: 'other' })).toThrow(TypeError);
    expect(table.match('GET', '/orgs/Acme/projects/api')).toMatchObject({ resource: { org: 'Acme' } });
    expect(table.match('DELETE', '/orgs/acme/projects/api')).toMatchObject({ action: 'project:delete' });
    expect(table.match('GET', '/orgs/acme/projects/api/unknown')).toBeUndefined();
  });

  it('still matches every path after many distinct ones, long ones too', () => {
    const table = new RouteTable();
    for (let n = 0; n < 25_000; n++)
      expect(table.match('GET', `/orgs/org-${n}`)?.resource).toEqual({ type: 'organization', org: `org-${n}` });
    const long = `/orgs/${'a'.repeat(300)}`;
    expect(table.match('GET', long)).toEqual(table.match('GET', long));
    expect(table.match('GET', long)).not.toBe(table.match('GET', long));
  });
});

describe('checked_by: upstream', () => {
  it('marks the parameter in every match, and lists it for the start-up log', () => {
    const table = new RouteTable([
      {
        method: ['GET', 'DELETE'],
        path: '/orgs/{org}/reports/{report}',
        action: 'report:read',
        service: 's',
        checked_by: { report: 'upstream' },
      },
    ]);
    expect(table.match('GET', '/orgs/acme/reports/Q3')).toMatchObject({
      resource: { type: 'report', org: 'acme', report: 'Q3' },
      checkedByUpstream: ['report'],
    });
    expect(table.match('GET', '/orgs/acme/credentials/aws')?.checkedByUpstream).toEqual([]);
    expect(table.uncheckedParameters()).toEqual([
      'GET /orgs/{org}/reports/{report} {report}',
      'DELETE /orgs/{org}/reports/{report} {report}',
    ]);
  });

  it('may hand a parameter the gateway could check to the upstream', () => {
    const table = new RouteTable([
      {
        method: 'GET',
        path: '/orgs/{org}/credentials/{credential}',
        action: 'credential:read',
        service: 'credentials',
        checked_by: { credential: 'upstream' },
      },
    ]);
    expect(table.match('GET', '/orgs/acme/credentials/aws')?.checkedByUpstream).toEqual(['credential']);
  });

  it('is used by no default route', () => {
    expect(new RouteTable().uncheckedParameters()).toEqual([]);
    expect(defaultRoutes.filter((route) => route.checkedBy !== undefined)).toEqual([]);
  });

  it('refuses an organization route with a parameter nobody checks, naming the fix', () => {
    const build = () => new RouteTable([{ method: 'GET', path: '/orgs/{org}/reports/{report}', action: 'report:read', service: 's' }]);
    expect(build).toThrow('route GET /orgs/{org}/reports/{report}: the gateway cannot check that {report} belongs to {org}');
    expect(build).toThrow('checked_by: { report: upstream }');
  });

  it('leaves routes outside an organization alone', () => {
    expect(
      new RouteTable([{ method: 'GET', path: '/reports/{report}', action: 'report:read', service: 's' }], []).match('GET', '/reports/x')
        ?.checkedByUpstream,
    ).toEqual([]);
  });

  it('refuses to name the organization or a parameter the pattern lacks', () => {
    expect(
      () => new RouteTable([{ method: 'GET', path: '/orgs/{org}', action: 'o:read', service: 's', checked_by: { org: 'upstream' } }]),
    ).toThrow(/\{org\} is always checked by the gateway/);
    expect(
      () => new RouteTable([{ method: 'GET', path: '/orgs/{org}/x', action: 'o:read', service: 's', checked_by: { thing: 'upstream' } }]),
    ).toThrow(/checked_by names \{thing\}, which is not a parameter/);
  });
});

describe('config routes', () => {
  it('add routes, with a method array and lower-case methods upper-cased', () => {
    const table = new RouteTable([{ method: ['get', 'Head'], path: '/orgs/{org}/audit', action: 'audit:read', service: 'organizations' }]);
    expect(table.match('GET', '/orgs/acme/audit')).toEqual({
      route: '/orgs/{org}/audit',
      path: '/orgs/acme/audit',
      action: 'audit:read',
      service: 'organizations',
      params: { org: 'acme' },
      resource: { type: 'audit', org: 'acme' },
      checkedByUpstream: [],
    });
    expect(table.match('HEAD', '/orgs/acme/audit')?.action).toBe('audit:read');
    expect(table.match('GET', '/orgs/acme')?.action).toBe('organization:read');
  });

  it('override a default route with the same method and pattern, leaving its other methods alone', () => {
    const table = new RouteTable([
      { method: 'DELETE', path: '/orgs/{org}', action: 'organization:archive', service: 'organizations', resource: 'archive' },
    ]);
    expect(table.match('DELETE', '/orgs/acme')).toMatchObject({
      action: 'organization:archive',
      resource: { type: 'archive', org: 'acme' },
    });
    expect(table.match('GET', '/orgs/acme')?.action).toBe('organization:read');
    expect(table.routes.filter((route) => route.method === 'DELETE' && route.path === '/orgs/{org}')).toHaveLength(1);
  });

  it('override a default route whose pattern differs only in parameter names', () => {
    const table = new RouteTable([{ method: 'GET', path: '/orgs/{slug}', action: 'organization:read', service: 'organizations' }]);
    expect(table.match('GET', '/orgs/acme')).toMatchObject({ route: '/orgs/{slug}', params: { slug: 'acme' } });
    expect(table.routes).toHaveLength(defaultRoutes.length);
  });

  it('replace the defaults entirely when none are given', () => {
    const table = new RouteTable([{ method: 'GET', path: '/', action: 'home:read', service: 'web' }], []);
    expect(table.match('GET', '/')?.action).toBe('home:read');
    expect(table.match('GET', '/orgs/acme')).toBeUndefined();
  });

  it('reject the same method and pattern twice', () => {
    const twice: RouteConfig[] = [
      { method: 'GET', path: '/a/{x}', action: 'a:read', service: 's' },
      { method: ['POST', 'GET'], path: '/a/{y}', action: 'a:read', service: 's' },
    ];
    expect(() => new RouteTable(twice)).toThrow('config route GET /a/{y} is listed twice');
  });

  it.each([
    ['orgs', /must start with "\/"/],
    ['/orgs//x', /empty segment/],
    ['/orgs/', /empty segment/],
    ['/orgs/*/x', /"\*" only as its last segment/],
    ['/orgs/{org}/x/{org}', /names the parameter \{org\} twice/],
    ['/orgs/{type}', /may not name a parameter \{type\}/],
    ['/orgs/{Org}', /malformed segment/],
    ['/orgs/x{org}', /malformed segment/],
    ['/orgs/{}', /malformed segment/],
    ['/orgs/a*', /malformed segment/],
    ['/Orgs', /not canonical \(write it "orgs"; literals match case-insensitively\)/],
    ['/orgs/%7e', /not canonical/],
    ['/orgs/caf%c3%a9', /write it "caf%C3%A9"/],
    ['/orgs/..', /no request can match/],
    ['/orgs/a;b', /no request can match/],
    ['/orgs/%2f', /no request can match/],
  ])('reject the pattern %j, naming it', (path, message) => {
    const build = () => new RouteTable([{ method: 'GET', path, action: 'x:read', service: 's' }], []);
    expect(build).toThrow(message);
    expect(build).toThrow(`"${path}"`);
  });

  it('reject a method that is not an HTTP token, and a malformed action or resource type', () => {
    expect(() => new RouteTable([{ method: 'GE T', path: '/a', action: 'a:read', service: 's' }], [])).toThrow(
      /not an upper-case HTTP method/,
    );
    expect(() => new RouteTable([{ method: 'GET', path: '/a', action: 'read', service: 's' }], [])).toThrow(/resource:verb/);
    expect(() => new RouteTable([{ method: 'GET', path: '/a', action: 'a:read', service: 's', resource: 'A B' }], [])).toThrow(
      /lower-case word/,
    );
  });

  it('reject ambiguous default routes', () => {
    const defaults: RouteDefinition[] = [
      { method: 'GET', path: '/a/{x}', action: 'a:read', service: 's' },
      { method: 'GET', path: '/a/{y}', action: 'a:read', service: 's' },
    ];
    expect(() => new RouteTable([], defaults)).toThrow(/ambiguous/);
  });
});

describe('expandRouteConfig', () => {
  it('yields one definition per method, keeping the resource type and checked_by', () => {
    expect(
      expandRouteConfig({
        method: ['get', 'PATCH'],
        path: '/a/{x}',
        action: 'a:read',
        service: 's',
        resource: 'thing',
        checked_by: { x: 'upstream' },
      }),
    ).toEqual([
      { method: 'GET', path: '/a/{x}', action: 'a:read', service: 's', resource: 'thing', checkedBy: { x: 'upstream' } },
      { method: 'PATCH', path: '/a/{x}', action: 'a:read', service: 's', resource: 'thing', checkedBy: { x: 'upstream' } },
    ]);
  });
});
