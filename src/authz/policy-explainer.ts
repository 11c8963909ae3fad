// Dry runs for policy authors (`POST /admin/v1/evaluate`, `portcullis explain`): the pipeline
// for a named subject without a token and without forwarding (canonicalize, route, subject,
// facts, policy), recorded as a dry-run decision, plus what would grant a missing permission:
// each grant the directory offers is tried by running the policy again with it added.
import type { DecisionRecorder } from '../audit/decision-record';
import type { Membership } from '../directory/subject';
import type { OrganizationGrants, RoleGrant } from '../directory/pg-grant-directory';
import { InputError } from '../base/errors';
import { timeOrderedId } from '../base/time-ordered-id';
import { canonicalizeTarget } from '../http/normalize-path';
import type { RouteMatcher } from '../routes/route';
import type { PolicyDecision, PolicyEngine, PolicyInput } from './policy-engine';
import type { RequestJudge } from './request-judge';

export interface ExplainQuery {
  /** A JWT `sub`, or a users.id. */
  subject: string;
  method: string;
  /** Path (and query) as a client would send it. */
  path: string;
  /** When the request is made (RFC 3339 with an offset): the policy's request.time; default now. */
  time?: string | undefined;
}

export interface Explanation {
  dry_run: true;
  method: string;
  /** The canonical path the route table and the policy see. */
  path: string;
  subject: { reference: string; sub: string; id: string | null; email: string | null };
  route: { pattern: string; action: string; service: string; params: Record<string, string> } | null;
  action: string | null;
  resource: PolicyInput['resource'] | null;
  /** The member's role, teams, counted roles and permissions in the addressed organization. */
  membership: Membership | null;
  facts: PolicyInput['facts'] | null;
  input: PolicyInput | null;
  result: PolicyDecision;
  revision: string | null;
  latency_us: number | null;
  decision_id: string | null;
  /** Set when the denial is for a permission the subject lacks in the organization. */
  missing_permission: MissingPermission | null;
  /** The shadow policy's answer for the same input, when one is configured. */
  shadow: { revision: string; result: PolicyDecision; agrees: boolean } | null;
}

export interface MissingPermission {
  permission: string;
  organization: string;
  /** The organization's roles holding the permission (or `resource:*`, `*`), with the teams that carry them. */
  granted_by: RoleGrant[];
  /** Grants with which the policy, run again, allows the request. */
  would_allow: GrantTried[];
  /** Grants that carry the permission but leave the request denied (another rule still says no). */
  still_denied: GrantTried[];
}

/**
 * A change to the subject's membership in the organization, and the policy's answer with it.
 * `default_role`: the member's default role becomes `role` (a non-member joins with it);
 * `team`: the member joins `team`, which carries `role`.
 */
export interface GrantTried {
  change: 'default_role' | 'team';
  role: string;
  team: string | null;
  result: PolicyDecision;
}

export interface ExplainerDependencies {
  routes: RouteMatcher;
  judge: Pick<RequestJudge, 'judge'>;
  /** The policy the judge evaluates, run again for each grant tried. */
  policy: { readonly current: PolicyEngine };
  directory: {
    subjectFor(reference: string): Promise<string | undefined>;
    grantsFor(organization: string, permissions: readonly string[]): Promise<RoleGrant[]>;
    grantsIn(organization: string): Promise<OrganizationGrants>;
  };
  recorder: Pick<DecisionRecorder, 'record'>;
}

const METHOD = /^[A-Za-z]{1,16}$/;

export class PolicyExplainer {
  constructor(private readonly deps: ExplainerDependencies) {}

  async explain(query: ExplainQuery): Promise<Explanation> {
    const method = query.method.toUpperCase();
    if (!METHOD.test(method)) throw new InputError(`"${query.method}" is not an HTTP method`);
    if (!query.subject) throw new InputError('a subject (JWT sub or user id) is required');
    if (!query.path.startsWith('/')) throw new InputError('the path must start with /');
    const receivedAt = query.time === undefined ? undefined : requestTime(query.time);
    const canonical = canonicalizeTarget(query.path).path;
    const sub = (await this.deps.directory.subjectFor(query.subject)) ?? query.subject;

    const match = this.deps.routes.match(method, canonical);
    if (!match) {
      // The gateway answers 404 before judging anything, and records nothing (R8).
      return {
        ...empty(method, canonical, query.subject, sub),
        result: { allow: false, status: 404, reasons: [`no route matches ${method} ${canonical}`] },
      };
    }
    // What the gateway would judge and forward (RouteMatch.path).
    const { path } = match;

    const requestId = `dry-run-${timeOrderedId()}`;
    const decisionId = timeOrderedId();
    const { input, evaluation, shadow, directoryVersion } = await this.deps.judge.judge({
      requestId,
      decisionId,
      method,
      path,
      match,
      sub,
      receivedAt,
      dryRun: true,
    });
    const { decision } = evaluation;
    this.deps.recorder.record({
      id: decisionId,
      time: new Date(),
      requestId,
      subject: sub,
      userId: input.subject.id,
      organization: match.resource.org ?? null,
      action: match.action,
      resource: match.resource,
      method,
      path,
      allow: decision.allow,
      status: decision.allow ? 200 : decision.status,
      reasons: decision.reasons,
      code: decision.code ?? null,
      codeParams: decision.params ?? null,
      policyRevision: evaluation.revision,
      evalLatencyUs: evaluation.latencyUs,
      input,
      dryRun: true,
      directoryVersion,
    });

    const org = match.resource.org;
    const membership = org !== undefined ? (input.subject.memberships[org] ?? null) : null;
    return {
      dry_run: true,
      method,
      path,
      subject: { reference: query.subject, sub, id: input.subject.id, email: input.subject.email },
      route: { pattern: match.route, action: match.action, service: match.service, params: { ...match.params } },
      action: match.action,
      resource: match.resource,
      membership,
      facts: input.facts,
      input,
      result: decision,
      revision: evaluation.revision,
      latency_us: evaluation.latencyUs,
      decision_id: decisionId,
      missing_permission: await this.missingPermission(decision, input, membership),
      shadow: shadow ? { revision: shadow.revision, result: shadow.decision, agrees: shadow.agrees } : null,
    };
  }

  /**
   * For a 403 in an existing organization where the subject holds none of action, `resource:*`,
   * `*`: every grant of the directory that carries one, tried on the same input. Only grants the
   * policy then allows are offered; a rule that still denies (R5's projects, R2's registration)
   * keeps a role from being suggested.
   */
  private async missingPermission(
    decision: PolicyDecision,
    input: PolicyInput,
    membership: Membership | null,
  ): Promise<Explanation['missing_permission']> {
    const org = input.resource.org;
    if (decision.allow || decision.status !== 403 || org === undefined || input.facts.organization?.exists !== true) return null;
    const granting = grantingPermissions(input.action);
    if (membership && granting.some((permission) => membership.permissions.includes(permission))) return null;
    const grantedBy = await this.deps.directory.grantsFor(org, granting);
    const tried: GrantTried[] = [];
    if (grantedBy.length > 0) {
      const grants = await this.deps.directory.grantsIn(org);
      const policy = this.deps.policy.current;
      for (const change of candidateChanges(grantedBy, membership)) {
        const changed = withMembership(input, org, membershipWith(change, membership, grants));
        tried.push({ ...change, result: policy.evaluate(changed).decision });
      }
    }
    return {
      permission: input.action,
      organization: org,
      granted_by: grantedBy,
      would_allow: tried.filter((grant) => grant.result.allow),
      still_denied: tried.filter((grant) => !grant.result.allow),
    };
  }
}

type Change = Omit<GrantTried, 'result'>;

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/i;

/** Epoch ms of an RFC 3339 date-time with an offset, so a rule on request.time can be tried for any day. */
export function requestTime(text: string, name = 'time'): number {
  const ms = RFC3339.test(text) ? Date.parse(text) : NaN;
  if (!Number.isFinite(ms))
    throw new InputError(`${name}: "${text}" is not an RFC 3339 date-time with an offset, e.g. 2026-12-04T10:00:00Z`);
  return ms;
}

/** Each granting role as the default role; for a member, also each team that carries one and that they are not in yet (once per team). */
function candidateChanges(grantedBy: readonly RoleGrant[], membership: Membership | null): Change[] {
  const changes: Change[] = grantedBy.map((grant) => ({ change: 'default_role', role: grant.role, team: null }));
  if (!membership) return changes;
  const teams = new Set<string>();
  for (const grant of grantedBy) {
    for (const team of grant.teams) {
      if (membership.teams.includes(team) || teams.has(team)) continue;
      teams.add(team);
      changes.push({ change: 'team', role: grant.role, team });
    }
  }
  return changes;
}

/** The membership the subject would have after `change`, counted as the subject loader counts it (R4). */
function membershipWith(change: Change, current: Membership | null, grants: OrganizationGrants): Membership {
  const teamRoles = (teams: readonly string[]) => teams.flatMap((team) => grants.teams.find((t) => t.name === team)?.roles ?? []);
  const teams = sorted([...(current?.teams ?? []), ...(change.team ? [change.team] : [])]);
  const role = change.change === 'default_role' ? change.role : (current?.role ?? '');
  const roles = sorted([...(role ? [role] : []), ...teamRoles(teams)]);
  const permissions = sorted(roles.flatMap((name) => grants.roles.find((r) => r.name === name)?.permissions ?? []));
  return { role, teams, roles, permissions };
}

function withMembership(input: PolicyInput, org: string, membership: Membership): PolicyInput {
  return { ...input, subject: { ...input.subject, memberships: { ...input.subject.memberships, [org]: membership } } };
}

/** Without duplicates, in code-point order (the subject loader's COLLATE "C"). */
function sorted(items: readonly string[]): string[] {
  return [...new Set(items)].sort();
}

/** What grants `action` (R4): the permission itself, every verb of its resource, or `*`. */
export function grantingPermissions(action: string): string[] {
  const resource = action.split(':')[0];
  return [action, `${resource}:*`, '*'];
}

function empty(method: string, path: string, reference: string, sub: string): Omit<Explanation, 'result'> {
  return {
    dry_run: true,
    method,
    path,
    subject: { reference, sub, id: null, email: null },
    route: null,
    action: null,
    resource: null,
    membership: null,
    facts: null,
    input: null,
    revision: null,
    latency_us: null,
    decision_id: null,
    missing_permission: null,
    shadow: null,
  };
}
