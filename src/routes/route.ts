// The route table's contract: a route turns a canonical method + path into the action
// the policy judges, the resource it concerns and the upstream service that serves it.

export interface RouteDefinition {
  method: string;
  /** Pattern such as `/orgs/{org}/projects/{project}`; a final `*` segment matches any rest. */
  path: string;
  action: string;
  service: string;
  /** Resource type given to the policy; defaults to the action's prefix (`project:read` -> `project`). */
  resource?: string;
  /**
   * Parameters the gateway forwards without checking them against the directory (R7): the
   * upstream must check them against the assertion's `org` claim. No default route has any.
   */
  checkedBy?: Readonly<Record<string, 'upstream'>>;
}

/**
 * Parameters of an organization-scoped route that the directory checks against `{org}`
 * (R7): each has a fact in the facts loader. Any other parameter of such a route must be
 * marked `checked_by: upstream`.
 */
export const DIRECTORY_CHECKED_PARAMETERS: ReadonlySet<string> = new Set(['project', 'team', 'role', 'user', 'credential', 'invitation']);

/** What the policy sees as `input.resource`: the type plus every path parameter, percent-decoded. */
export interface Resource {
  type: string;
  org?: string;
  [param: string]: string | undefined;
}

export interface RouteMatch {
  /** The matched pattern, e.g. `/orgs/{org}` (design §3.4 `request.route`). */
  route: string;
  /**
   * The path that is judged and forwarded: the canonical path with each literal segment
   * spelled as the route spells it (literals match case-insensitively), parameter and
   * wildcard segments exactly as sent.
   */
  path: string;
  action: string;
  service: string;
  /** Path parameters, percent-decoded (`core%20team` is `core team`). */
  params: Readonly<Record<string, string>>;
  resource: Resource;
  /** Parameters the route marks `checked_by: upstream`, in path order; usually none. */
  checkedByUpstream: readonly string[];
}

export interface RouteMatcher {
  /** `path` must already be canonical (see http/normalize-path.ts). */
  match(method: string, path: string): RouteMatch | undefined;
}
