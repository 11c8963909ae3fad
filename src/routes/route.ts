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
}

/** What the policy sees as `input.resource`: the type plus every path parameter. */
export interface Resource {
  type: string;
  org?: string;
  [param: string]: string | undefined;
}

export interface RouteMatch {
  /** The matched pattern, e.g. `/orgs/{org}` (design §3.4 `request.route`). */
  route: string;
  action: string;
  service: string;
  params: Readonly<Record<string, string>>;
  resource: Resource;
}

export interface RouteMatcher {
  /** `path` must already be canonical (see http/normalize-path.ts). */
  match(method: string, path: string): RouteMatch | undefined;
}
