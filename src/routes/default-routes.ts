// The default route table (design §3.3), one entry per method and pattern so that the
// whole surface the gateway exposes can be audited line by line. Anything not listed,
// including HEAD and OPTIONS, is unmatched and therefore denied (R8).
//
// Method mapping for a resource collection: GET read, POST create. For an item: GET read,
// PATCH and PUT update, DELETE delete. Team members are part of the team: reading them is
// team:read and every change is team:update (joining a team grants its roles, so it must
// never need only team:create).
import type { RouteDefinition } from './route';

const route = (method: string, path: string, action: string, service: string, resource?: string): RouteDefinition =>
  resource === undefined ? { method, path, action, service } : { method, path, action, service, resource };

export const defaultRoutes: readonly RouteDefinition[] = Object.freeze(
  [
    // The caller's own organizations: the upstream lists them; any registered user may ask.
    route('GET', '/orgs', 'organization:list', 'organizations'),
    route('POST', '/orgs', 'organization:create', 'organizations'),
    route('GET', '/orgs/{org}', 'organization:read', 'organizations'),
    route('PATCH', '/orgs/{org}', 'organization:update', 'organizations'),
    route('DELETE', '/orgs/{org}', 'organization:delete', 'organizations'),

    route('GET', '/orgs/{org}/members', 'member:read', 'organizations'),
    route('POST', '/orgs/{org}/members', 'member:invite', 'organizations'),
    route('GET', '/orgs/{org}/members/{user}', 'member:read', 'organizations'),
    route('PATCH', '/orgs/{org}/members/{user}', 'member:update', 'organizations'),
    route('DELETE', '/orgs/{org}/members/{user}', 'member:remove', 'organizations'),
    // Leaving: the caller's own membership, which any member may end (no permission needed).
    route('DELETE', '/orgs/{org}/members/me', 'member:leave', 'organizations', 'member'),

    // Invitations are how members are added: reading them is member:read, sending or revoking member:invite.
    route('GET', '/orgs/{org}/invitations', 'member:read', 'organizations', 'invitation'),
    route('POST', '/orgs/{org}/invitations', 'member:invite', 'organizations', 'invitation'),
    route('GET', '/orgs/{org}/invitations/{invitation}', 'member:read', 'organizations', 'invitation'),
    route('DELETE', '/orgs/{org}/invitations/{invitation}', 'member:invite', 'organizations', 'invitation'),

    route('GET', '/orgs/{org}/teams', 'team:read', 'organizations'),
    route('POST', '/orgs/{org}/teams', 'team:create', 'organizations'),
    route('GET', '/orgs/{org}/teams/{team}', 'team:read', 'organizations'),
    route('PATCH', '/orgs/{org}/teams/{team}', 'team:update', 'organizations'),
    route('PUT', '/orgs/{org}/teams/{team}', 'team:update', 'organizations'),
    route('DELETE', '/orgs/{org}/teams/{team}', 'team:delete', 'organizations'),
    route('GET', '/orgs/{org}/teams/{team}/members', 'team:read', 'organizations', 'team'),
    route('POST', '/orgs/{org}/teams/{team}/members', 'team:update', 'organizations', 'team'),
    route('PATCH', '/orgs/{org}/teams/{team}/members', 'team:update', 'organizations', 'team'),
    route('PUT', '/orgs/{org}/teams/{team}/members', 'team:update', 'organizations', 'team'),
    route('GET', '/orgs/{org}/teams/{team}/members/{user}', 'team:read', 'organizations', 'team'),
    route('PUT', '/orgs/{org}/teams/{team}/members/{user}', 'team:update', 'organizations', 'team'),
    route('DELETE', '/orgs/{org}/teams/{team}/members/{user}', 'team:update', 'organizations', 'team'),
    // A team's roles are part of the team, like its members: attaching one is team:update.
    route('GET', '/orgs/{org}/teams/{team}/roles', 'team:read', 'organizations', 'team'),
    route('PUT', '/orgs/{org}/teams/{team}/roles/{role}', 'team:update', 'organizations', 'team'),
    route('DELETE', '/orgs/{org}/teams/{team}/roles/{role}', 'team:update', 'organizations', 'team'),

    route('GET', '/orgs/{org}/roles', 'role:read', 'organizations'),
    route('POST', '/orgs/{org}/roles', 'role:create', 'organizations'),
    route('GET', '/orgs/{org}/roles/{role}', 'role:read', 'organizations'),
    route('PATCH', '/orgs/{org}/roles/{role}', 'role:update', 'organizations'),
    route('PUT', '/orgs/{org}/roles/{role}', 'role:update', 'organizations'),
    route('DELETE', '/orgs/{org}/roles/{role}', 'role:delete', 'organizations'),

    // The organization's directory change log (directory_events).
    route('GET', '/orgs/{org}/events', 'audit:read', 'organizations'),

    route('POST', '/invitations/{invitation}/accept', 'invitation:accept', 'organizations'),

    route('GET', '/orgs/{org}/projects', 'project:read', 'projects'),
    route('POST', '/orgs/{org}/projects', 'project:create', 'projects'),
    route('GET', '/orgs/{org}/projects/{project}', 'project:read', 'projects'),
    route('PATCH', '/orgs/{org}/projects/{project}', 'project:update', 'projects'),
    route('PUT', '/orgs/{org}/projects/{project}', 'project:update', 'projects'),
    route('DELETE', '/orgs/{org}/projects/{project}', 'project:delete', 'projects'),
    route('GET', '/orgs/{org}/projects/{project}/pipelines', 'pipeline:read', 'projects'),
    route('POST', '/orgs/{org}/projects/{project}/pipelines', 'pipeline:run', 'projects'),
    route('GET', '/orgs/{org}/projects/{project}/pipelines/*', 'pipeline:read', 'projects'),
    route('POST', '/orgs/{org}/projects/{project}/pipelines/*', 'pipeline:run', 'projects'),

    route('GET', '/orgs/{org}/credentials', 'credential:read', 'credentials'),
    route('POST', '/orgs/{org}/credentials', 'credential:create', 'credentials'),
    route('GET', '/orgs/{org}/credentials/{credential}', 'credential:read', 'credentials'),
    route('PATCH', '/orgs/{org}/credentials/{credential}', 'credential:update', 'credentials'),
    route('PUT', '/orgs/{org}/credentials/{credential}', 'credential:update', 'credentials'),
    route('DELETE', '/orgs/{org}/credentials/{credential}', 'credential:delete', 'credentials'),

    // `/users/me` has no `user` parameter: the route itself says "the caller" (R6). Registering
    // is the one action open to a verified token whose subject has no users row yet.
    route('PUT', '/users/me', 'profile:register', 'users', 'profile'),
    route('GET', '/users/me', 'profile:read', 'users', 'profile'),
    route('PATCH', '/users/me', 'profile:update', 'users', 'profile'),
    route('PUT', '/users/me/picture', 'profile:update', 'users', 'profile'),
    route('POST', '/users/me/password-reset', 'profile:update', 'users', 'profile'),
    route('GET', '/users/{user}', 'profile:read', 'users', 'profile'),
    route('PATCH', '/users/{user}', 'profile:update', 'users', 'profile'),
    route('GET', '/users/{user}/picture', 'profile:read', 'users', 'profile'),
  ].map((definition) => Object.freeze(definition)),
);
