// The access map of one organization: members × permissions, each cell saying where the
// permission comes from (the default role, or a team and its role), answered from the
// directory as R4 counts it; "who can do ACTION?" narrows to one column, "what can USER do?"
// to one row, and every cell links to the explain playground for a request needing it.
import { holds } from '../../directory-service/permission-grammar';
import { html, type Html } from './console-html';
import type { MemberGrants } from './console-store';
import { queryString } from './decision-query';

/** What the console needs of a route (the default table's, or one from the config's `routes:`). */
export interface ConsoleRoute {
  method: string | readonly string[];
  path: string;
  action: string;
}

/** Where `member` gets `permission` from: "default role X" and "team T (role R)" entries. */
export function sourcesOf(member: MemberGrants, permission: string): string[] {
  const sources: string[] = [];
  if (holds(new Set(member.defaultPermissions), permission)) sources.push(`default role ${member.defaultRole}`);
  for (const team of member.teams) if (holds(new Set(team.permissions), permission)) sources.push(`team ${team.team} (role ${team.role})`);
  return sources;
}

/** The organization-scoped actions of the route table, in table order, once each. */
export function orgActions(routes: readonly ConsoleRoute[]): string[] {
  return [...new Set(routes.filter((route) => route.path.includes('{org}') && !route.path.endsWith('/me')).map((route) => route.action))];
}

/** A request of the route table needing `action` in `org`, for the explain playground (other parameters from `sample`). */
export function sampleRequest(
  routes: readonly ConsoleRoute[],
  action: string,
  org: string,
  sample: Record<string, string>,
): { method: string; path: string } | undefined {
  const route = routes.find((candidate) => candidate.action === action && candidate.path.includes('{org}'));
  if (!route) return undefined;
  return {
    method: typeof route.method === 'string' ? route.method : (route.method[0] ?? 'GET'),
    path: route.path.replace(/\{(\w+)\}/g, (_, name: string) => (name === 'org' ? org : (sample[name] ?? name))),
  };
}

export interface AccessQuery {
  org: string;
  action?: string | undefined;
  user?: string | undefined;
}

export function accessPage(
  query: AccessQuery,
  orgs: string[],
  members: MemberGrants[],
  actions: string[],
  routes: readonly ConsoleRoute[],
  sample: Record<string, string>,
): Html {
  const columns = query.action ? actions.filter((action) => action === query.action) : actions;
  const rows = query.user
    ? members.filter((member) => member.subject === query.user || member.userId === query.user || member.email === query.user)
    : members;
  const explainLink = (member: MemberGrants, action: string) => {
    const request = sampleRequest(routes, action, query.org, sample);
    return request
      ? `/console/explain${queryString({}, { subject: member.subject, method: request.method, path: request.path })}`
      : undefined;
  };
  return html`
<form method="get" action="/console/access" class="filters" aria-label="Access map">
<div class="field"><label for="a-org">Organization</label><select id="a-org" name="org">${orgs.map((slug) => html`<option${slug === query.org ? html` selected` : ''}>${slug}</option>`)}</select></div>
<div class="field"><label for="a-action">Who can do (action)</label><select id="a-action" name="action"><option value="">any action</option>${actions.map(
    (action) => html`<option${action === query.action ? html` selected` : ''}>${action}</option>`,
  )}</select></div>
<div class="field"><label for="a-user">What can (user sub, id or e-mail)</label><input id="a-user" name="user" value="${query.user ?? ''}"></div>
<div class="actions"><button type="submit">Show</button></div>
</form>
${query.action ? whoCan(query.action, rows, explainLink) : ''}
${query.user && rows[0] ? whatCan(rows[0], actions, explainLink) : query.user ? html`<p role="alert">${query.user} is not a member of ${query.org}.</p>` : ''}
<div class="matrix-wrap" tabindex="0" role="region" aria-label="Members and permissions of ${query.org}">
<table class="matrix"><caption>Members of ${query.org} × permissions (✓ held; hover or focus a cell for where it comes from)</caption>
<thead><tr><th scope="col">member</th>${columns.map((action) => html`<th scope="col"><span>${action}</span></th>`)}</tr></thead>
<tbody>${rows.map(
    (member) =>
      html`<tr><th scope="row"><a href="/console/decisions${queryString({ user: member.subject })}">${member.subject}</a><br><small>${member.defaultRole}${
        member.teams.length ? `; teams ${[...new Set(member.teams.map((team) => team.team))].join(', ')}` : ''
      }</small></th>${columns.map((action) => {
        const sources = sourcesOf(member, action);
        const link = explainLink(member, action);
        const mark = sources.length > 0 ? '✓' : '·';
        return html`<td class="${sources.length > 0 ? 'held' : 'not-held'}" title="${sources.join('; ') || 'not held'}">${
          link ? html`<a href="${link}" aria-label="${member.subject} ${action}: ${sources.join('; ') || 'not held'}">${mark}</a>` : mark
        }</td>`;
      })}</tr>`,
  )}</tbody></table></div>`;
}

function whoCan(action: string, members: MemberGrants[], link: (member: MemberGrants, action: string) => string | undefined): Html {
  const holders = members.map((member) => ({ member, sources: sourcesOf(member, action) })).filter((entry) => entry.sources.length > 0);
  return html`<section aria-labelledby="who-h" id="who-can"><h2 id="who-h">Who can do ${action}?</h2>
${
  holders.length === 0
    ? html`<p>Nobody in this organization.</p>`
    : html`<ul>${holders.map(
        ({ member, sources }) =>
          html`<li><strong>${member.subject}</strong>: ${sources.join('; ')} ${optionalLink(link(member, action))}</li>`,
      )}</ul>`
}</section>`;
}

function whatCan(member: MemberGrants, actions: string[], link: (member: MemberGrants, action: string) => string | undefined): Html {
  const held = actions.map((action) => ({ action, sources: sourcesOf(member, action) })).filter((entry) => entry.sources.length > 0);
  return html`<section aria-labelledby="what-h" id="what-can"><h2 id="what-h">What can ${member.subject} do?</h2>
<ul>${held.map(({ action, sources }) => html`<li><code>${action}</code>: ${sources.join('; ')} ${optionalLink(link(member, action))}</li>`)}</ul></section>`;
}

function optionalLink(href: string | undefined): Html {
  return href ? html`<a href="${href}">explain</a>` : html``;
}
