// The route table: the default routes (design §3.3) merged with the config's `routes`,
// compiled once into one segment trie per method. Matching walks the canonical path's
// segments; at every position a literal beats a parameter, which beats a final `*`.
// Literal segments match case-insensitively; parameter values keep their case.
import type { RouteConfig } from '../config/config-schema';
import { canonicalizeTarget, decodeSegment } from '../http/normalize-path';
import { defaultRoutes } from './default-routes';
import { DIRECTORY_CHECKED_PARAMETERS, type Resource, type RouteDefinition, type RouteMatch, type RouteMatcher } from './route';

interface CompiledRoute {
  pattern: string;
  action: string;
  service: string;
  type: string;
  /** Names of the pattern's parameters, in path order. */
  paramNames: readonly string[];
  /**
   * `type` and the parameters' names in PostgreSQL's jsonb key order, the order a resource is
   * built in: the decision record's canonical JSON (resource, and input.resource) then needs no sort.
   */
  resourceKeys: readonly string[];
  /** The pattern's segments: a literal's text, or undefined for a parameter or `*`. */
  literals: readonly (string | undefined)[];
  checkedByUpstream: readonly string[];
}

interface TrieNode {
  literals: Map<string, TrieNode>;
  param?: TrieNode;
  /** A route ending in `*`: matches one or more further segments. */
  wildcard?: CompiledRoute;
  route?: CompiledRoute;
}

type Segment = { kind: 'literal'; value: string } | { kind: 'param'; name: string } | { kind: 'wildcard' };

/** Matches kept for reuse, of paths up to RECENT_PATH_LENGTH only: about 12 MB at the very most. */
const RECENT_MATCHES = 10_000;
const RECENT_PATH_LENGTH = 256;

const METHOD = /^[!#$%&'*+.^_`|~0-9A-Z-]+$/;
const PARAM = /^\{([a-z][a-z0-9_]*)\}$/;
const ACTION = /^[a-z][a-z0-9_-]*:[a-z*][a-z0-9_-]*$/;

/** A config entry becomes one definition per method, method names upper-cased. */
export function expandRouteConfig(entry: RouteConfig): RouteDefinition[] {
  const methods = Array.isArray(entry.method) ? entry.method : [entry.method];
  return methods.map((method) => {
    const definition: RouteDefinition = { method: method.toUpperCase(), path: entry.path, action: entry.action, service: entry.service };
    if (entry.resource !== undefined) definition.resource = entry.resource;
    if (entry.checked_by !== undefined) definition.checkedBy = entry.checked_by;
    return definition;
  });
}

export class RouteTable implements RouteMatcher {
  /** The effective routes after overrides, for `explain` and documentation. */
  readonly routes: readonly RouteDefinition[];
  private readonly tries = new Map<string, TrieNode>();
  /** The latest matches by `METHOD path`, at most RECENT_MATCHES of them. */
  private readonly recent = new Map<string, RouteMatch>();

  /**
   * Config routes replace a default with the same method and the same pattern shape
   * (parameter names aside) and add every other route. Throws Error naming any bad pattern.
   */
  constructor(configRoutes: readonly RouteConfig[] = [], defaults: readonly RouteDefinition[] = defaultRoutes) {
    const effective = new Map<string, RouteDefinition>();
    for (const definition of defaults) {
      const key = keyOf(validated(definition));
      const existing = effective.get(key);
      if (existing)
        throw new Error(`default route ${definition.method} ${definition.path} is ambiguous with ${existing.method} ${existing.path}`);
      effective.set(key, definition);
    }
    const fromConfig = new Set<string>();
    for (const entry of configRoutes) {
      for (const definition of expandRouteConfig(entry)) {
        const key = keyOf(validated(definition));
        if (fromConfig.has(key)) throw new Error(`config route ${definition.method} ${definition.path} is listed twice`);
        fromConfig.add(key);
        effective.set(key, definition);
      }
    }

    this.routes = Object.freeze([...effective.values()]);
    for (const definition of this.routes) this.insert(definition);
  }

  /** Parameters marked `checked_by: upstream`, as `METHOD /pattern {param}` lines for the start-up log. */
  uncheckedParameters(): string[] {
    return this.routes.flatMap((route) => Object.keys(route.checkedBy ?? {}).map((name) => `${route.method} ${route.path} {${name}}`));
  }

  /**
   * The route a canonical path matches, frozen: a match depends on the method and the path
   * alone, so the latest matches are kept and shared (a service's traffic repeats its paths),
   * and a frozen resource's JSON is kept by the policy engine and the decision record.
   */
  match(method: string, path: string): RouteMatch | undefined {
    const key = method + ' ' + path;
    let match = this.recent.get(key);
    if (match === undefined) {
      match = this.find(method, path);
      if (match === undefined || path.length > RECENT_PATH_LENGTH) return match;
      // Whole generations: cheaper on every request than keeping a recency order.
      if (this.recent.size >= RECENT_MATCHES) this.recent.clear();
      this.recent.set(key, match);
    }
    return match;
  }

  private find(method: string, path: string): RouteMatch | undefined {
    const root = this.tries.get(method);
    if (!root || path.charCodeAt(0) !== 0x2f) return undefined;
    const segments = path === '/' ? [] : path.slice(1).split('/');
    const values: string[] = [];
    const route = find(root, segments, 0, values);
    if (!route) return undefined;

    const params: Record<string, string> = {};
    for (let i = 0; i < route.paramNames.length; i++) params[route.paramNames[i]!] = decodeSegment(values[i]!);
    const members: Record<string, string> = {};
    for (const key of route.resourceKeys) members[key] = key === 'type' ? route.type : params[key]!;
    const resource = members as Resource;
    // One spelling per route: literals as the route writes them, everything else as sent.
    let judged = '';
    for (let i = 0; i < segments.length; i++) judged += '/' + (route.literals[i] ?? segments[i]!);
    return Object.freeze({
      route: route.pattern,
      path: judged || '/',
      action: route.action,
      service: route.service,
      params: Object.freeze(params),
      resource: Object.freeze(resource),
      checkedByUpstream: route.checkedByUpstream,
    });
  }

  private insert(definition: RouteDefinition): void {
    const segments = parsePattern(definition.path);
    const paramNames = segments.flatMap((segment) => (segment.kind === 'param' ? [segment.name] : []));
    const compiled: CompiledRoute = {
      pattern: definition.path,
      action: definition.action,
      service: definition.service,
      type: definition.resource ?? definition.action.slice(0, definition.action.indexOf(':')),
      paramNames,
      resourceKeys: ['type', ...paramNames].sort(jsonbKeyOrder),
      literals: segments.map((segment) => (segment.kind === 'literal' ? segment.value : undefined)),
      checkedByUpstream: Object.freeze(paramNames.filter((name) => definition.checkedBy?.[name] === 'upstream')),
    };
    let node = this.tries.get(definition.method);
    if (!node) this.tries.set(definition.method, (node = newNode()));
    for (const segment of segments) {
      if (segment.kind === 'wildcard') {
        node.wildcard = compiled;
        return;
      }
      if (segment.kind === 'param') {
        node = node.param ??= newNode();
      } else {
        let next = node.literals.get(segment.value);
        if (!next) node.literals.set(segment.value, (next = newNode()));
        node = next;
      }
    }
    node.route = compiled;
  }
}

/** Depth-first: literal, then parameter, then wildcard, backtracking when a branch dead-ends. */
function find(node: TrieNode, segments: readonly string[], index: number, values: string[]): CompiledRoute | undefined {
  if (index === segments.length) return node.route;
  const segment = segments[index]!;
  const literal = node.literals.get(foldCase(segment));
  if (literal) {
    const found = find(literal, segments, index + 1, values);
    if (found) return found;
  }
  if (node.param && segment !== '') {
    values.push(segment);
    const found = find(node.param, segments, index + 1, values);
    if (found) return found;
    values.pop();
  }
  return segment === '' ? undefined : node.wildcard;
}

/** ASCII letters lower-cased outside escapes, whose hex stays upper-case as in canonical patterns. */
function foldCase(segment: string): string {
  return /[A-Z]/.test(segment)
    ? segment.replace(/%[0-9A-F]{2}|[A-Z]+/g, (text) => (text.charCodeAt(0) === 0x25 ? text : text.toLowerCase()))
    : segment;
}

function newNode(): TrieNode {
  return { literals: new Map() };
}

function validated(definition: RouteDefinition): RouteDefinition {
  const where = `route ${definition.method} ${definition.path}`;
  if (!METHOD.test(definition.method)) throw new Error(`${where}: "${definition.method}" is not an upper-case HTTP method`);
  if (!ACTION.test(definition.action)) throw new Error(`${where}: action "${definition.action}" does not look like resource:verb`);
  if (!definition.service) throw new Error(`${where}: no service`);
  if (definition.resource !== undefined && !/^[a-z][a-z0-9_-]*$/.test(definition.resource)) {
    throw new Error(`${where}: resource type "${definition.resource}" must be a lower-case word`);
  }
  const segments = parsePattern(definition.path);
  const params = new Set(segments.flatMap((segment) => (segment.kind === 'param' ? [segment.name] : [])));
  for (const [name, checker] of Object.entries(definition.checkedBy ?? {})) {
    if (!params.has(name)) throw new Error(`${where}: checked_by names {${name}}, which is not a parameter of the pattern`);
    if (name === 'org')
      throw new Error(`${where}: {org} is always checked by the gateway (membership depends on it), it cannot be checked_by ${checker}`);
  }
  // R7: in an organization's routes, every parameter is checked by someone.
  if (params.has('org')) {
    for (const name of params) {
      if (name === 'org' || DIRECTORY_CHECKED_PARAMETERS.has(name) || definition.checkedBy?.[name] === 'upstream') continue;
      throw new Error(
        `${where}: the gateway cannot check that {${name}} belongs to {org} (it checks ${[...DIRECTORY_CHECKED_PARAMETERS].map((p) => `{${p}}`).join(', ')}); ` +
          `mark it checked_by: { ${name}: upstream } if the upstream checks it against the assertion's org claim`,
      );
    }
  }
  return definition;
}

/**
 * Splits a pattern into segments. Literal segments must already be canonical and lower-case
 * (no dot segments, no forbidden escapes, hex of escapes upper-case), since requests are
 * compared with them case-folded and a pattern that is not could never match.
 */
function parsePattern(pattern: string): Segment[] {
  const bad = (reason: string) => new Error(`route pattern "${pattern}" ${reason}`);
  if (!pattern.startsWith('/')) throw bad('must start with "/"');
  if (pattern === '/') return [];
  const parts = pattern.slice(1).split('/');
  const names = new Set<string>();
  return parts.map((part, index): Segment => {
    if (part === '') throw bad('has an empty segment (a "//" or a trailing "/")');
    if (part === '*') {
      if (index !== parts.length - 1) throw bad('may use "*" only as its last segment');
      return { kind: 'wildcard' };
    }
    const param = PARAM.exec(part);
    if (param) {
      const name = param[1]!;
      if (name === 'type') throw bad('may not name a parameter {type}: it would hide the resource type');
      if (names.has(name)) throw bad(`names the parameter {${name}} twice`);
      names.add(name);
      return { kind: 'param', name };
    }
    if (/[{}*]/.test(part)) throw bad(`has a malformed segment "${part}" (parameters are a whole segment like {name}, "*" only alone)`);
    let canonical: string;
    try {
      canonical = canonicalizeTarget('/' + part).path;
    } catch (error) {
      throw bad(`has a segment "${part}" that no request can match: ${(error as Error).message}`);
    }
    const folded = foldCase(canonical.slice(1));
    if (folded !== part)
      throw bad(`has a segment "${part}" that is not canonical (write it "${folded}"; literals match case-insensitively)`);
    return { kind: 'literal', value: part };
  });
}

/** Method plus pattern shape: `/orgs/{org}` and `/orgs/{slug}` are the same route. */
function keyOf(definition: RouteDefinition): string {
  const shape = parsePattern(definition.path).map((segment) =>
    segment.kind === 'literal' ? segment.value : segment.kind === 'param' ? '{}' : '*',
  );
  return `${definition.method} /${shape.join('/')}`;
}

/** PostgreSQL's jsonb key order for ASCII keys (parameter names are): shorter first, equal lengths by their bytes. */
function jsonbKeyOrder(a: string, b: string): number {
  return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);
}
