import { randomUUID } from 'node:crypto';
import type { DecisionRecord } from '../src/audit/decision-record';
/** A decision shaped like the gateway's: the full policy input of an org-scoped project read. */
export function decisionForScratch(n: number, time = new Date()): DecisionRecord {
  const userId = randomUUID();
  const allow = n % 4 !== 0;
  return {
    id: randomUUID(),
    time,
    requestId: randomUUID(),
    subject: `user-${n % 5000}`,
    userId,
    organization: `org-${n % 300}`,
    action: allow ? 'project:read' : 'project:delete',
    resource: { type: 'project', org: `org-${n % 300}`, project: `project-${n % 7}` },
    method: allow ? 'GET' : 'DELETE',
    path: `/orgs/org-${n % 300}/projects/project-${n % 7}`,
    allow,
    status: allow ? 200 : 403,
    reasons: allow ? [`granted by permission 'project:read' in organization 'org-${n % 300}'`] : [`missing permission 'project:delete' in organization 'org-${n % 300}' (your roles there: default)`],
    policyRevision: 'sha256:3f6b1c0e9a7d2b44',
    evalLatencyUs: 20 + (n % 40),
    input: {
      request: { id: randomUUID(), method: allow ? 'GET' : 'DELETE', path: `/orgs/org-${n % 300}/projects/project-${n % 7}`, route: '/orgs/{org}/projects/{project}' },
      action: allow ? 'project:read' : 'project:delete',
      resource: { type: 'project', org: `org-${n % 300}`, project: `project-${n % 7}` },
      subject: {
        id: userId,
        sub: `user-${n % 5000}`,
        email: `user-${n % 5000}@example.com`,
        memberships: {
          [`org-${n % 300}`]: { role: 'default', teams: ['team-1'], roles: ['default', 'deployer'], permissions: ['member:read', 'organization:read', 'pipeline:read', 'pipeline:run', 'project:create', 'project:read', 'team:read'] },
          [`org-${(n + 1) % 300}`]: { role: 'organization-admin', teams: [], roles: ['organization-admin'], permissions: ['*'] },
        },
      },
      facts: { organization: { exists: true }, project: { exists: true, in_organization: true } },
    },
  };
}

