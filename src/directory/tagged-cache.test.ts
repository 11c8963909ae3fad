// The cache logic alone, with a controllable freshness source and hand-resolved loads: what
// is stored, what is evicted, and the race between a slow load and a change notification.
import { parseDirectoryChange } from './directory-cache';
import { TaggedCache } from './tagged-cache';

interface Value {
  v: number;
}

function deferred<T>(): { promise: Promise<T>; resolve: (value: T) => void; reject: (error: unknown) => void } {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

const freshness = { live: true };
let loads: number;
let cache: TaggedCache<Value>;
const tags = (key: string) => () => [`k:${key}`, 'group:all', ...(key.startsWith('a') ? ['group:a'] : [])];
const get = (key: string, value = 1) =>
  cache.get(
    key,
    () => {
      loads += 1;
      return Promise.resolve({ v: value });
    },
    tags(key),
  );

beforeEach(() => {
  freshness.live = true;
  loads = 0;
  cache = new TaggedCache<Value>(freshness, { maxEntries: 3, ttlMs: 60_000 });
});

describe('TaggedCache', () => {
  it('loads once and then serves from memory, counting hits and misses', async () => {
    expect(await get('a1')).toEqual({ v: 1 });
    expect(await get('a1')).toEqual({ v: 1 });
    expect(loads).toBe(1);
    expect(cache.stats()).toEqual({ hits: 1, misses: 1, size: 1 });
  });

  it('peeks at a stored entry without loading, counting a hit, and at a missing one without counting anything', async () => {
    expect(cache.peek('a1')).toBeUndefined();
    expect(cache.stats()).toEqual({ hits: 0, misses: 0, size: 0 });
    await get('a1', 7);
    expect(cache.peek('a1')).toEqual({ v: 7 });
    expect(loads).toBe(1);
    expect(cache.stats()).toEqual({ hits: 1, misses: 1, size: 1 });
    cache.evictTagged(['k:a1']);
    expect(cache.peek('a1')).toBeUndefined();
  });

  it('peeks at nothing while its freshness source is not live', async () => {
    await get('a1');
    freshness.live = false;
    expect(cache.peek('a1')).toBeUndefined();
  });

  it('evicts exactly the entries carrying an evicted tag', async () => {
    await get('a1');
    await get('a2');
    await get('b1');
    cache.evictTagged(['group:a']);
    loads = 0;
    await get('a1');
    await get('a2');
    await get('b1');
    expect(loads).toBe(2);
  });

  it('holds no more than its bound, dropping the least recently used entry and its tags', async () => {
    for (const key of ['a1', 'a2', 'b1', 'b2']) await get(key);
    expect(cache.stats().size).toBe(3);
    loads = 0;
    await get('a1');
    expect(loads).toBe(1);
    cache.evictTagged(['k:a1']);
    expect(cache.stats().size).toBe(2);
  });

  it('stores a load that was in flight while a change named only other tags', async () => {
    const slow = deferred<Value>();
    const pending = cache.get('a1', () => slow.promise, tags('a1'));
    cache.evictTagged(['k:other', 'group:b']);
    slow.resolve({ v: 1 });
    expect(await pending).toEqual({ v: 1 });
    expect(cache.stats().size).toBe(1);
    expect(await get('a1', 2)).toEqual({ v: 1 });
  });

  it('does not store a load when a change named one of its tags while it was in flight, though that tag is known only from what it read', async () => {
    const slow = deferred<Value>();
    const pending = cache.get(
      'a1',
      () => slow.promise,
      (value) => [`k:a1`, `read:${value.v}`],
    );
    cache.evictTagged(['read:7']);
    slow.resolve({ v: 7 });
    expect(await pending).toEqual({ v: 7 });
    expect(cache.stats().size).toBe(0);
    expect(await get('a1', 8)).toEqual({ v: 8 });
  });

  it('stores a load that started after the change that named its tag', async () => {
    const earlier = deferred<Value>();
    const first = cache.get('b1', () => earlier.promise, tags('b1')); // keeps a load in flight, so the change is remembered
    cache.evictTagged(['k:a1']);
    expect(await get('a1', 1)).toEqual({ v: 1 });
    expect(cache.stats().size).toBe(1);
    earlier.resolve({ v: 2 });
    await first;
    expect(cache.stats().size).toBe(2);
  });

  it('does not store any load that was in flight when everything was dropped', async () => {
    const a = deferred<Value>();
    const b = deferred<Value>();
    const pendingA = cache.get('a1', () => a.promise, tags('a1'));
    const pendingB = cache.get('b1', () => b.promise, tags('b1'));
    cache.clear();
    a.resolve({ v: 1 });
    b.resolve({ v: 2 });
    expect([await pendingA, await pendingB]).toEqual([{ v: 1 }, { v: 2 }]);
    expect(cache.stats().size).toBe(0);
  });

  it('remembers a bounded number of invalidations, refusing the loads older than those it forgot', async () => {
    const bounded = new TaggedCache<Value>(freshness, { maxEntries: 10, ttlMs: 60_000, maxRememberedInvalidations: 3 });
    const within = deferred<Value>();
    const pendingWithin = bounded.get('a1', () => within.promise, tags('a1'));
    for (const tag of ['x:1', 'x:2', 'x:3']) bounded.evictTagged([tag]);
    within.resolve({ v: 1 });
    await pendingWithin;
    expect(bounded.stats().size).toBe(1);

    const beyond = deferred<Value>();
    const pendingBeyond = bounded.get('b1', () => beyond.promise, tags('b1'));
    for (const tag of ['y:1', 'y:2', 'y:3', 'y:4']) bounded.evictTagged([tag]);
    beyond.resolve({ v: 2 });
    await pendingBeyond;
    expect(bounded.stats().size).toBe(1);
    expect(await bounded.get('b1', () => Promise.resolve({ v: 3 }), tags('b1'))).toEqual({ v: 3 });
    expect(bounded.stats().size).toBe(2);
  });

  it('shares one load between identical requests, but not across an eviction, and a superseded load does not overwrite its successor', async () => {
    const first = deferred<Value>();
    const second = deferred<Value>();
    let calls = 0;
    const load = () => (++calls === 1 ? first.promise : second.promise);
    const a = cache.get('a1', load, tags('a1'));
    const b = cache.get('a1', load, tags('a1'));
    cache.evictTagged(['k:a1']);
    const c = cache.get('a1', load, tags('a1'));
    expect(calls).toBe(2);
    second.resolve({ v: 2 });
    expect(await c).toEqual({ v: 2 });
    first.resolve({ v: 1 });
    expect([await a, await b]).toEqual([{ v: 1 }, { v: 1 }]);
    expect(await get('a1', 3)).toEqual({ v: 2 });
  });

  it('neither serves nor stores while changes cannot be heard', async () => {
    await get('a1', 1);
    freshness.live = false;
    expect(await get('a1', 2)).toEqual({ v: 2 });
    expect(await get('a1', 3)).toEqual({ v: 3 });
    freshness.live = true;
    expect(await get('a1', 4)).toEqual({ v: 1 });
  });

  it('passes a failed load to every waiting caller and stores nothing', async () => {
    const failing = deferred<Value>();
    const a = cache.get('a1', () => failing.promise, tags('a1'));
    const b = cache.get('a1', () => failing.promise, tags('a1'));
    failing.reject(new Error('database down'));
    await expect(a).rejects.toThrow('database down');
    await expect(b).rejects.toThrow('database down');
    expect(await get('a1', 5)).toEqual({ v: 5 });
  });

  it('forgets entries after the time-to-live even without a notification', async () => {
    const short = new TaggedCache<Value>(freshness, { maxEntries: 3, ttlMs: 30 });
    let n = 0;
    const load = () => Promise.resolve({ v: ++n });
    await short.get('a1', load, tags('a1'));
    expect(await short.get('a1', load, tags('a1'))).toEqual({ v: 1 });
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(await short.get('a1', load, tags('a1'))).toEqual({ v: 2 });
  });

  it('freezes what it stores, so one request cannot change what the next one reads', async () => {
    const value = await get('a1');
    expect(() => {
      value.v = 9;
    }).toThrow(TypeError);
  });
});

describe('parseDirectoryChange', () => {
  it('reads the trigger payload', () => {
    expect(
      parseDirectoryChange(
        '{"table":"teams","op":"UPDATE","subjects":{"users":["u1"],"subs":[],"orgs":[]},"facts":{"orgs":["acme"],"ids":["t1"]}}',
      ),
    ).toEqual({
      table: 'teams',
      op: 'UPDATE',
      subjects: { all: false, users: ['u1'], subs: [], orgs: [] },
      facts: { all: false, orgs: ['acme'], ids: ['t1'] },
    });
  });

  it.each(['not json', '[]', '{"table":"x"}', '{"subjects":{"users":[1]},"facts":{}}'])(
    'asks for everything to be dropped when it cannot read %s',
    (payload) => {
      const change = parseDirectoryChange(payload);
      expect(change.subjects.all).toBe(true);
      expect(change.facts.all || payload.includes('"facts":{}')).toBe(true);
    },
  );
});
