// Resource facts cached in front of the PostgreSQL read model, keyed by the action and the
// whole resource (type and every path parameter), so two requests share an entry only when
// the facts loader would ask PostgreSQL the same question. Entries are tagged with the
// organization slugs and the row ids they mention, which is what change notifications name.
import type { Resource } from '../routes/route';
import type { CacheFreshness, CacheStats, CacheStatsSource, DirectoryCache, DirectoryChange } from './directory-cache';
import type { Facts, FactsLoader } from './subject';
import { TaggedCache, type TaggedCacheOptions } from './tagged-cache';
import { isUuid } from '../db/uuid';

export class CachedFactsLoader implements FactsLoader, DirectoryCache, CacheStatsSource {
  private readonly cache: TaggedCache<Facts>;

  constructor(
    private readonly inner: FactsLoader,
    freshness: CacheFreshness,
    options: TaggedCacheOptions,
  ) {
    this.cache = new TaggedCache(freshness, options);
  }

  load(resource: Resource, action: string): Promise<Facts> {
    return this.loadThrough(resource, action, () => this.inner.load(resource, action));
  }

  loadThrough(resource: Resource, action: string, read: () => Promise<Facts>): Promise<Facts> {
    return this.cache.get(keyOf(resource, action), read, (facts) => factTags(resource, facts));
  }

  cached(resource: Resource, action: string): Facts | undefined {
    return this.cache.peek(keyOf(resource, action));
  }

  evict(change: DirectoryChange): void {
    const { all, orgs, ids } = change.facts;
    if (all) {
      this.cache.clear();
      return;
    }
    if (orgs.length + ids.length === 0) return;
    this.cache.evictTagged([...orgs.map(orgTag), ...ids.map(idTag)]);
  }

  clear(): void {
    this.cache.clear();
  }

  cacheStats(): CacheStats {
    return this.cache.stats();
  }
}

/** Keys of frozen resources (the route table's shared matches), each written once. */
const frozenKeys = new WeakMap<Resource, { action: string; key: string }>();

function keyOf(resource: Resource, action: string): string {
  if (!Object.isFrozen(resource)) return `${action} ${JSON.stringify(resource)}`;
  const known = frozenKeys.get(resource);
  if (known?.action === action) return known.key;
  const key = `${action} ${JSON.stringify(resource)}`;
  frozenKeys.set(resource, { action, key });
  return key;
}

// Slugs are exact (path parameters keep their case, and stored slugs are lower-case by
// constraint); ids are uuids, which PostgreSQL matches whatever their case.
const orgTag = (slug: string) => `org:${slug}`;
const idTag = (id: string) => `id:${id.toLowerCase()}`;

/** The organization addressed, every id-shaped parameter, and an invitation's organization. */
function factTags(resource: Resource, facts: Facts): string[] {
  const tags: string[] = [];
  for (const [name, value] of Object.entries(resource)) {
    if (value === undefined || name === 'type') continue;
    if (name === 'org') tags.push(orgTag(value));
    else if (isUuid(value)) tags.push(idTag(value));
  }
  const invitationOrg = facts.invitation?.organization;
  if (typeof invitationOrg === 'string') tags.push(orgTag(invitationOrg));
  return tags;
}
