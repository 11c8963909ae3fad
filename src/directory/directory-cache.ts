// What the directory caches share: the change notifications the database sends (see
// migrations/20261128000020_directory_notify.js), the contract a cache offers the change
// listener, and the counters operators read. A cache serves only while its freshness
// source is live, i.e. while no change can go unnoticed.

/** Counters of one bounded cache; `cacheStats()` is what the metrics and the admin port read. */
export interface CacheStats {
  hits: number;
  misses: number;
  /** Entries held now. */
  size: number;
}

export interface CacheStatsSource {
  cacheStats(): CacheStats;
}

/** One `pg_notify('portcullis_directory', …)` payload: what changed and which entries it may have made stale. */
export interface DirectoryChange {
  table: string;
  op: string;
  subjects: SubjectEvictions;
  facts: FactEvictions;
}

export interface SubjectEvictions {
  /** Every cached subject may be stale (a change too large to list, or a built-in role). */
  all: boolean;
  /** users.id of the callers whose subject changed. */
  users: string[];
  /** JWT subjects (users.subject), old and new: also callers not yet registered. */
  subs: string[];
  /** Organization slugs: every member of these organizations. */
  orgs: string[];
}

export interface FactEvictions {
  all: boolean;
  /** Organization slugs: every fact of a request addressed under these organizations. */
  orgs: string[];
  /** Row ids (projects, teams, roles, invitations, member user ids) a request may address directly. */
  ids: string[];
}

/** A cache the change listener keeps fresh. */
export interface DirectoryCache {
  /** Drops every entry the change may have made stale. */
  evict(change: DirectoryChange): void;
  /** Drops everything: changes may have gone unnoticed. */
  clear(): void;
}

/** Whether caches may serve: false while changes could go unnoticed (no LISTEN connection). */
export interface CacheFreshness {
  readonly live: boolean;
}

/** Parses a notification payload; anything unexpected asks for everything to be dropped (fail safe). */
export function parseDirectoryChange(payload: string): DirectoryChange {
  const everything: DirectoryChange = {
    table: 'unknown',
    op: 'unknown',
    subjects: { all: true, users: [], subs: [], orgs: [] },
    facts: { all: true, orgs: [], ids: [] },
  };
  let value: unknown;
  try {
    value = JSON.parse(payload);
  } catch {
    return everything;
  }
  if (!isObject(value) || !isObject(value.subjects) || !isObject(value.facts)) return everything;
  const { subjects, facts } = value;
  return {
    table: typeof value.table === 'string' ? value.table : 'unknown',
    op: typeof value.op === 'string' ? value.op : 'unknown',
    subjects: {
      all: subjects.all === true || !strings(subjects.users) || !strings(subjects.subs) || !strings(subjects.orgs),
      users: strings(subjects.users) ?? [],
      subs: strings(subjects.subs) ?? [],
      orgs: strings(subjects.orgs) ?? [],
    },
    facts: {
      all: facts.all === true || !strings(facts.orgs) || !strings(facts.ids),
      orgs: strings(facts.orgs) ?? [],
      ids: strings(facts.ids) ?? [],
    },
  };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A list of strings; an absent list is empty, anything else is unreadable (undefined). */
function strings(value: unknown): string[] | undefined {
  if (value === undefined || value === null) return [];
  return Array.isArray(value) && value.every((item) => typeof item === 'string') ? value : undefined;
}
