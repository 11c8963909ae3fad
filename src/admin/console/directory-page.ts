// The directory, read-only: organizations, and for one organization its members, teams,
// roles, invitations and projects, each linking to the access map and to the decisions of
// that subject or organization. Changes go through the directory service, never here.
import { formatTime, html, table, type Html } from './console-html';
import type { ConsoleStore } from './console-store';
import { queryString } from './decision-query';

type Organization = NonNullable<Awaited<ReturnType<ConsoleStore['organization']>>>;

export function organizationsPage(orgs: Awaited<ReturnType<ConsoleStore['organizations']>>): Html {
  return table(
    ['organization', 'name', 'members', 'teams', 'projects', ''],
    orgs.map(
      (org) =>
        html`<tr><td><a href="/console/directory/${org.slug}">${org.slug}</a></td><td>${org.name}</td><td>${org.members}</td><td>${org.teams}</td><td>${org.projects}</td><td><a href="/console/access${queryString(
          {
            org: org.slug,
          },
        )}">access map</a> · <a href="/console/decisions${queryString({ org: org.slug })}">decisions</a></td></tr>`,
    ),
    'Organizations',
  );
}

export function organizationPage(org: Organization): Html {
  return html`<p>${org.name}, created ${formatTime(org.createdAt)}. <a href="/console/access${queryString({ org: org.slug })}">Access map</a> · <a href="/console/decisions${queryString({ org: org.slug })}">Decisions</a></p>
${table(
  ['member', 'e-mail', 'default role', 'teams', ''],
  org.members.map(
    (member) =>
      html`<tr><td>${member.subject}</td><td>${member.email ?? '–'}</td><td>${member.defaultRole}</td><td>${[...new Set(member.teams.map((team) => team.team))].join(', ')}</td><td><a href="/console/access${queryString(
        {
          org: org.slug,
          user: member.subject,
        },
      )}">what can they do</a> · <a href="/console/decisions${queryString({ user: member.subject })}">decisions</a></td></tr>`,
  ),
  'Members',
)}
${table(
  ['team', 'members', 'roles'],
  org.teams.map((team) => html`<tr><td>${team.name}</td><td>${team.members.join(', ')}</td><td>${team.roles.join(', ')}</td></tr>`),
  'Teams',
)}
${table(
  ['role', 'permissions'],
  org.roles.map(
    (role) => html`<tr><td>${role.name}${role.builtin ? ' (built-in)' : ''}</td><td><code>${role.permissions.join(' ')}</code></td></tr>`,
  ),
  'Roles usable here',
)}
${table(
  ['invitation', 'e-mail', 'role', 'sent', 'accepted'],
  org.invitations.map(
    (i) =>
      html`<tr><td><code>${i.id}</code></td><td>${i.email}</td><td>${i.role}</td><td>${formatTime(i.created_at)}</td><td>${i.accepted_at ? formatTime(i.accepted_at) : 'pending'}</td></tr>`,
  ),
  'Invitations',
)}
${table(
  ['project', 'name', 'id'],
  org.projects.map((p) => html`<tr><td>${p.slug}</td><td>${p.name ?? '–'}</td><td><code>${p.id}</code></td></tr>`),
  'Projects',
)}`;
}
