// Subjects by JWT `sub`, cached in front of the PostgreSQL read model. Each entry is tagged
// with its user id and the slugs of its organizations, so a change notification evicts
// exactly the callers it concerns.
import type { CacheFreshness, CacheStats, CacheStatsSource, DirectoryCache, DirectoryChange } from './directory-cache';
import type { Subject, SubjectLoader } from './subject';
import { TaggedCache, type TaggedCacheOptions } from './tagged-cache';

export class CachedSubjectLoader implements SubjectLoader, DirectoryCache, CacheStatsSource {
  private readonly cache: TaggedCache<Subject>;

  constructor(
    private readonly inner: SubjectLoader,
    freshness: CacheFreshness,
    options: TaggedCacheOptions,
  ) {
    this.cache = new TaggedCache(freshness, options);
  }

  load(sub: string): Promise<Subject> {
    return this.loadThrough(sub, () => this.inner.load(sub));
  }

  loadThrough(sub: string, read: () => Promise<Subject>): Promise<Subject> {
    return this.cache.get(sub, read, subjectTags);
  }

  cached(sub: string): Subject | undefined {
    return this.cache.peek(sub);
  }

  evict(change: DirectoryChange): void {
    const { all, users, subs, orgs } = change.subjects;
    if (all) {
      this.cache.clear();
      return;
    }
    if (users.length + subs.length + orgs.length === 0) return;
    this.cache.evictTagged([...users.map(userTag), ...subs.map(subTag), ...orgs.map(orgTag)]);
  }

  clear(): void {
    this.cache.clear();
  }

  cacheStats(): CacheStats {
    return this.cache.stats();
  }
}

const userTag = (id: string) => `user:${id.toLowerCase()}`;
const subTag = (sub: string) => `sub:${sub}`;
const orgTag = (slug: string) => `org:${slug}`;

function subjectTags(subject: Subject): string[] {
  const tags = [subTag(subject.sub), ...Object.keys(subject.memberships).map(orgTag)];
  if (subject.id !== null) tags.push(userTag(subject.id));
  return tags;
}
