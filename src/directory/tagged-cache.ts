// The bounded cache behind the directory loaders: an LRU with a time-to-live safety net,
// a tag index so a change notification evicts exactly the entries it concerns, and
// coalescing of identical loads in flight. A load that was in flight when anything was
// evicted is returned to its caller but never stored: it may have read the old rows.
import { LRUCache } from 'lru-cache';
import type { CacheFreshness, CacheStats } from './directory-cache';

export interface TaggedCacheOptions {
  maxEntries: number;
  /** Longest time an entry is served, even if no notification ever says it changed. */
  ttlMs: number;
}

interface InFlight<V> {
  generation: number;
  promise: Promise<V>;
}

export class TaggedCache<V extends object> {
  private readonly lru: LRUCache<string, V>;
  private readonly keysByTag = new Map<string, Set<string>>();
  private readonly tagsByKey = new Map<string, readonly string[]>();
  private readonly inFlight = new Map<string, InFlight<V>>();
  /** Bumped by every eviction; a load started in an older generation is not stored. */
  private generation = 0;
  private hits = 0;
  private misses = 0;

  constructor(
    private readonly freshness: CacheFreshness,
    options: TaggedCacheOptions,
  ) {
    this.lru = new LRUCache<string, V>({
      max: options.maxEntries,
      ttl: options.ttlMs,
      dispose: (_value, key) => this.untag(key),
    });
  }

  /** The cached value, or `load()`'s (shared with an identical load in flight). */
  get(key: string, load: () => Promise<V>, tagsOf: (value: V) => readonly string[]): Promise<V> {
    if (!this.freshness.live) {
      this.misses += 1;
      return load();
    }
    const cached = this.lru.get(key);
    if (cached !== undefined) {
      this.hits += 1;
      return Promise.resolve(cached);
    }
    this.misses += 1;
    const pending = this.inFlight.get(key);
    if (pending && pending.generation === this.generation) return pending.promise;

    const generation = this.generation;
    const promise: Promise<V> = load().then(
      (value) => {
        this.settled(key, promise);
        if (generation === this.generation && this.freshness.live) this.store(key, deepFreeze(value), tagsOf(value));
        return value;
      },
      (error: unknown) => {
        this.settled(key, promise);
        throw error;
      },
    );
    this.inFlight.set(key, { generation, promise });
    return promise;
  }

  /** Drops every entry carrying one of these tags. */
  evictTagged(tags: Iterable<string>): void {
    this.generation += 1;
    for (const tag of tags) {
      const keys = this.keysByTag.get(tag);
      if (!keys) continue;
      for (const key of [...keys]) this.lru.delete(key);
    }
  }

  clear(): void {
    this.generation += 1;
    this.lru.clear();
    this.keysByTag.clear();
    this.tagsByKey.clear();
  }

  stats(): CacheStats {
    return { hits: this.hits, misses: this.misses, size: this.lru.size };
  }

  private store(key: string, value: V, tags: readonly string[]): void {
    // set() disposes (and so untags) a previous value of the key before the new tags go in.
    this.lru.set(key, value);
    if (!this.lru.has(key)) return;
    this.tagsByKey.set(key, tags);
    for (const tag of tags) {
      let keys = this.keysByTag.get(tag);
      if (!keys) this.keysByTag.set(tag, (keys = new Set()));
      keys.add(key);
    }
  }

  private untag(key: string): void {
    const tags = this.tagsByKey.get(key);
    if (!tags) return;
    this.tagsByKey.delete(key);
    for (const tag of tags) {
      const keys = this.keysByTag.get(tag);
      keys?.delete(key);
      if (keys?.size === 0) this.keysByTag.delete(tag);
    }
  }

  private settled(key: string, promise: Promise<V>): void {
    if (this.inFlight.get(key)?.promise === promise) this.inFlight.delete(key);
  }
}

/** Cached values are shared by every request that reads them: nobody may change one. */
function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}
