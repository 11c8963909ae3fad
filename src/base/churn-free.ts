// Collections for what every request puts in and takes out again (the requests in flight, the
// evaluations waiting for the policy thread), in place of a long-lived Set or Map.
//
// Why not a Set or Map: V8 keeps their entries in a hash table that it replaces with a new one
// whenever deletions pile up or it fills, and the table it leaves behind keeps a pointer to its
// successor (for iterators still walking it) and its old entries. Once a major GC has moved the
// current table into the old generation, every table after it is kept alive by the dead one
// before it until the next major GC, with the entries each held: every request's objects
// outlive two scavenges and are promoted, which makes promoting them the steady state. Under
// load that nearly tripled the gateway's GC pauses and cost it a fifth of its rate (a third
// without decision records) from the first mark-compact on (BENCHMARKS.md, fifteenth round).
// Here entries live in arrays that only grow, and a removed entry's slot is cleared, so nothing
// dead keeps a later request alive.

/** What a SlotSet holds: its position there, kept on the item itself (-1 while not in one). */
export interface Slotted {
  slot: number;
}

/** A set of objects, each in at most one SlotSet at a time. */
export class SlotSet<T extends Slotted> implements Iterable<T> {
  private readonly items: (T | undefined)[] = [];
  private readonly free: number[] = [];
  private count = 0;

  get size(): number {
    return this.count;
  }

  add(item: T): void {
    if (this.has(item)) return;
    if (item.slot !== -1) throw new Error('the item is in another SlotSet');
    const slot = this.free.pop() ?? this.items.length;
    this.items[slot] = item;
    item.slot = slot;
    this.count += 1;
  }

  /** True when it was here. */
  delete(item: T): boolean {
    if (!this.has(item)) return false;
    this.items[item.slot] = undefined;
    this.free.push(item.slot);
    item.slot = -1;
    this.count -= 1;
    return true;
  }

  has(item: T): boolean {
    return item.slot >= 0 && this.items[item.slot] === item;
  }

  /** The items as they are now (a copy: the loop may add or delete). */
  *[Symbol.iterator](): Iterator<T> {
    for (const item of this.items.slice()) if (item !== undefined) yield item;
  }
}

/**
 * Values by non-negative whole-number ids handed out in sequence (0, 1, 2, …), few of them held
 * at once: an id's slot is its low bits, and the table doubles when two held ids share one.
 */
export class IdTable<V> {
  private ids: number[];
  private values: (V | undefined)[];
  private count = 0;

  constructor(initialCapacity = 64) {
    const capacity = 2 ** Math.ceil(Math.log2(Math.max(2, initialCapacity)));
    this.ids = new Array<number>(capacity).fill(-1);
    this.values = new Array<V | undefined>(capacity).fill(undefined);
  }

  get size(): number {
    return this.count;
  }

  set(id: number, value: V): void {
    if (!Number.isSafeInteger(id) || id < 0) throw new RangeError(`an IdTable id is a whole number ≥ 0, not ${id}`);
    for (;;) {
      const slot = id & (this.ids.length - 1);
      const held = this.ids[slot]!;
      if (held === -1 || held === id) {
        if (held === -1) this.count += 1;
        this.ids[slot] = id;
        this.values[slot] = value;
        return;
      }
      this.grow();
    }
  }

  get(id: number): V | undefined {
    const slot = id & (this.ids.length - 1);
    return this.ids[slot] === id ? this.values[slot] : undefined;
  }

  has(id: number): boolean {
    return this.ids[id & (this.ids.length - 1)] === id;
  }

  /** True when it was here. */
  delete(id: number): boolean {
    const slot = id & (this.ids.length - 1);
    if (this.ids[slot] !== id) return false;
    this.ids[slot] = -1;
    this.values[slot] = undefined;
    this.count -= 1;
    return true;
  }

  /** The ids held now, in no particular order (a copy: the loop may delete). */
  heldIds(): number[] {
    return this.ids.filter((id) => id !== -1);
  }

  private grow(): void {
    const { ids, values } = this;
    this.ids = new Array<number>(ids.length * 2).fill(-1);
    this.values = new Array<V | undefined>(ids.length * 2).fill(undefined);
    this.count = 0;
    for (let slot = 0; slot < ids.length; slot++) if (ids[slot] !== -1) this.set(ids[slot]!, values[slot] as V);
  }
}
