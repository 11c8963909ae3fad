// The grants the explainer tries, with fakes for the judge, the directory and the policy: the
// input each grant is tried on carries the membership the subject loader would then load (R4).
import type { Membership } from '../directory/subject';
import type { OrganizationGrants, RoleGrant } from '../directory/pg-grant-directory';
import type { RouteMatch } from '../routes/route';
import type { PolicyDecision, PolicyInput } from './policy-engine';
import { PolicyExplainer } from './policy-explainer';

const MATCH: RouteMatch = {
  route: '/orgs/{org}/projects/{project}',
  path: '/orgs/acme/projects/web',
  action: 'project:delete',
  service: 'projects',
  params: { org: 'acme', project: 'web' },
  resource: { type: 'project', org: 'acme', project: 'web' },
  checkedByUpstream: [],
};

const GRANTS: OrganizationGrants = {
  roles: [
    { name: 'default', permissions: ['organization:read', 'project:read'] },
    { name: 'organization-admin', permissions: ['*'] },
    { name: 'project-admin', permissions: ['project:*'] },
    { name: 'project-creator', permissions: ['project:create'] },
    { name: 'auditor', permissions: ['audit:read'] },
  ],
  teams: [
    { name: 'builders', roles: ['project-creator'] },
    { name: 'releasers', roles: ['auditor', 'project-admin'] },
  ],
};

const GRANTED_BY: RoleGrant[] = [
  { role: 'organization-admin', builtin: true, via: ['*'], teams: [] },
  { role: 'project-admin', builtin: false, via: ['project:*'], teams: ['releasers'] },
];

const DENIED: PolicyDecision = { allow: false, status: 403, reasons: ['missing permission'] };

function explainerFor(membership: Membership | null, decide: (input: PolicyInput) => PolicyDecision) {
  const input: PolicyInput = {
    request: { id: 'r', method: 'DELETE', path: MATCH.path, route: MATCH.route },
    action: MATCH.action,
    resource: MATCH.resource,
    subject: { id: 'u-1', sub: 'bob', email: null, memberships: membership ? { acme: membership } : {} },
    facts: { organization: { exists: true }, project: { exists: true, in_organization: true } },
  };
  const tried: PolicyInput[] = [];
  const explainer = new PolicyExplainer({
    routes: { match: () => MATCH },
    judge: {
      judge: () =>
        Promise.resolve({
          input,
          evaluation: { decision: DENIED, revision: 'r1', latencyUs: 1 },
          directorySeconds: 0,
          directoryVersion: null,
        }),
    },
    policy: {
      current: {
        revision: 'r1',
        evaluate: (changed) => {
          tried.push(changed);
          return { decision: decide(changed), revision: 'r1', latencyUs: 1 };
        },
      },
    },
    directory: {
      subjectFor: () => Promise.resolve('bob'),
      grantsFor: () => Promise.resolve(GRANTED_BY),
      grantsIn: () => Promise.resolve(GRANTS),
    },
    recorder: { record: () => undefined },
  });
  return { explainer, tried };
}

const BOB: Membership = {
  role: 'default',
  teams: ['builders'],
  roles: ['default', 'project-creator'],
  permissions: ['organization:read', 'project:create', 'project:read'],
};

describe('PolicyExplainer: grants tried', () => {
  it('replaces the default role but keeps the teams’ roles, and adds a team with every role it carries', async () => {
    const { explainer, tried } = explainerFor(BOB, () => DENIED);
    await explainer.explain({ subject: 'bob', method: 'DELETE', path: '/orgs/acme/projects/web' });
    expect(tried.map((input) => input.subject.memberships.acme)).toEqual([
      {
        role: 'organization-admin',
        teams: ['builders'],
        roles: ['organization-admin', 'project-creator'],
        permissions: ['*', 'project:create'],
      },
      {
        role: 'project-admin',
        teams: ['builders'],
        roles: ['project-admin', 'project-creator'],
        permissions: ['project:*', 'project:create'],
      },
      {
        role: 'default',
        teams: ['builders', 'releasers'],
        roles: ['auditor', 'default', 'project-admin', 'project-creator'],
        permissions: ['audit:read', 'organization:read', 'project:*', 'project:create', 'project:read'],
      },
    ]);
    // Everything else in the input is as judged.
    for (const input of tried)
      expect(input).toMatchObject({ action: 'project:delete', subject: { id: 'u-1', sub: 'bob' }, facts: { project: { exists: true } } });
  });

  it('offers only the grants the policy then allows, and lists the rest with the policy’s answer', async () => {
    // A policy that, beside the permission, wants the member in team releasers.
    const { explainer } = explainerFor(BOB, (input) =>
      input.subject.memberships.acme!.teams.includes('releasers')
        ? { allow: true, status: 200, reasons: ['ok'] }
        : { allow: false, status: 403, reasons: ['releasers only'] },
    );
    const explanation = await explainer.explain({ subject: 'bob', method: 'DELETE', path: '/orgs/acme/projects/web' });
    expect(explanation.missing_permission?.would_allow).toEqual([
      { change: 'team', role: 'project-admin', team: 'releasers', result: { allow: true, status: 200, reasons: ['ok'] } },
    ]);
    expect(explanation.missing_permission?.still_denied.map((grant) => [grant.change, grant.role, grant.result.reasons])).toEqual([
      ['default_role', 'organization-admin', ['releasers only']],
      ['default_role', 'project-admin', ['releasers only']],
    ]);
  });

  it('tries a non-member only as a member with a granting default role', async () => {
    const { explainer, tried } = explainerFor(null, () => DENIED);
    await explainer.explain({ subject: 'bob', method: 'DELETE', path: '/orgs/acme/projects/web' });
    expect(tried.map((input) => input.subject.memberships.acme)).toEqual([
      { role: 'organization-admin', teams: [], roles: ['organization-admin'], permissions: ['*'] },
      { role: 'project-admin', teams: [], roles: ['project-admin'], permissions: ['project:*'] },
    ]);
  });
});
