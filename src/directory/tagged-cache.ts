// The bounded cache behind the directory loaders: an LRU with a time-to-live safety net,
// a tag index so a change notification evicts exactly the entries it concerns, and
// coalescing of identical loads in flight. A load during which a notification named one of
// its tags (or everything was dropped) is returned to its caller but never stored: it may
// have read the old rows. Its tags are known only once it is read, so each invalidation is
// remembered, by sequence number, for as long as a load that started before it is in flight.
import { LRUCache } from 'lru-cache';
import type { CacheFreshness, CacheStats } from './directory-cache';

export interface TaggedCacheOptions {
  maxEntries: number;
  /** Longest time an entry is served, even if no notification ever says it changed. */
  ttlMs: number;
  /**
   * Invalidations remembered for the loads in flight, at most; default 10,000. A longer burst
   * during one load only costs hits: the oldest are forgotten, and loads older than them go unstored.
   */
  maxRememberedInvalidations?: number;
}

/** One load being read; `startedAt` is the invalidation sequence number when it began. */
interface Fill<V> {
  startedAt: number;
  promise: Promise<V>;
}

export class TaggedCache<V extends object> {
  private readonly lru: LRUCache<string, V>;
  private readonly keysByTag = new Map<string, Set<string>>();
  private readonly tagsByKey = new Map<string, readonly string[]>();
  /** The newest load of each key, which identical requests share. */
  private readonly inFlight = new Map<string, Fill<V>>();
  /** Every load being read, superseded ones too, oldest first (a Set keeps insertion order). */
  private readonly reading = new Set<Fill<V>>();
  /** Bumped by every invalidation, of some tags or of everything. */
  private sequence = 0;
  /** Each tag's last invalidation, in increasing order; empty while nothing is being read. */
  private readonly invalidatedAt = new Map<string, number>();
  /** A load that started before this is not stored: everything was dropped, or forgotten, since. */
  private floor = 0;
  private readonly maxRemembered: number;
  private hits = 0;
  private misses = 0;

  constructor(
    private readonly freshness: CacheFreshness,
    options: TaggedCacheOptions,
  ) {
    this.maxRemembered = options.maxRememberedInvalidations ?? 10_000;
    this.lru = new LRUCache<string, V>({
      max: options.maxEntries,
      ttl: options.ttlMs,
      dispose: (_value, key) => this.untag(key),
    });
  }

  /** The cached value if there is one (counted as a hit), without waiting; otherwise undefined, and nothing is counted. */
  peek(key: string): V | undefined {
    if (!this.freshness.live) return undefined;
    const cached = this.lru.get(key);
    if (cached !== undefined) this.hits += 1;
    return cached;
  }

  /** The cached value, or `load()`'s (shared with an identical load in flight). */
  get(key: string, load: () => Promise<V>, tagsOf: (value: V) => readonly string[]): Promise<V> {
    const cached = this.peek(key);
    if (cached !== undefined) return Promise.resolve(cached);
    this.misses += 1;
    if (!this.freshness.live) return load();
    // Shared only if nothing was invalidated since it started: its tags are not known yet.
    const pending = this.inFlight.get(key);
    if (pending && pending.startedAt === this.sequence) return pending.promise;

    const fill: Fill<V> = {
      startedAt: this.sequence,
      promise: load().then(
        (value) => {
          const tags = tagsOf(value);
          // A superseded load is older than the one that replaced it: that one stores.
          const fresh = this.inFlight.get(key) === fill && this.freshness.live && this.unchangedSince(fill.startedAt, tags);
          this.settled(key, fill);
          if (fresh) this.store(key, deepFreeze(value), tags);
          return value;
        },
        (error: unknown) => {
          this.settled(key, fill);
          throw error;
        },
      ),
    };
    this.inFlight.set(key, fill);
    this.reading.add(fill);
    return fill.promise;
  }

  /** Drops every entry carrying one of these tags, and keeps the loads in flight that carry one from being stored. */
  evictTagged(tags: Iterable<string>): void {
    this.sequence += 1;
    for (const tag of tags) {
      if (this.reading.size > 0) this.remember(tag);
      const keys = this.keysByTag.get(tag);
      if (!keys) continue;
      for (const key of [...keys]) this.lru.delete(key);
    }
  }

  clear(): void {
    this.sequence += 1;
    this.floor = this.sequence;
    this.invalidatedAt.clear();
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

  /** Whether nothing a load started at `startedAt` read, as `tags` say, was invalidated since. */
  private unchangedSince(startedAt: number, tags: readonly string[]): boolean {
    if (startedAt < this.floor) return false;
    return tags.every((tag) => (this.invalidatedAt.get(tag) ?? 0) <= startedAt);
  }

  private remember(tag: string): void {
    this.invalidatedAt.delete(tag); // re-inserted last, so the map stays in sequence order
    this.invalidatedAt.set(tag, this.sequence);
    // Invalidations that no load in flight predates can refuse nothing: forget them, and
    // beyond the bound the oldest others too, refusing the loads older than those instead.
    const oldest = this.reading.values().next().value?.startedAt ?? this.sequence;
    for (const [forgotten, at] of this.invalidatedAt) {
      if (at > oldest && this.invalidatedAt.size <= this.maxRemembered) break;
      this.invalidatedAt.delete(forgotten);
      if (at > oldest) this.floor = Math.max(this.floor, at);
    }
  }

  private settled(key: string, fill: Fill<V>): void {
    if (this.inFlight.get(key) === fill) this.inFlight.delete(key);
    this.reading.delete(fill);
    if (this.reading.size === 0) this.invalidatedAt.clear();
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
