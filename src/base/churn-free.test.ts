import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { IdTable, SlotSet, type Slotted } from './churn-free';

const item = (name: string): Slotted & { name: string } => ({ slot: -1, name });

describe('SlotSet', () => {
  it('adds, finds, deletes and counts its items, and reuses a freed place', () => {
    const set = new SlotSet<Slotted & { name: string }>();
    const [a, b, c] = [item('a'), item('b'), item('c')];
    set.add(a);
    set.add(b);
    set.add(a);
    expect(set.size).toBe(2);
    expect(set.has(a) && set.has(b)).toBe(true);
    expect(set.has(c)).toBe(false);

    expect(set.delete(a)).toBe(true);
    expect(set.delete(a)).toBe(false);
    expect(a.slot).toBe(-1);
    expect(set.has(a)).toBe(false);
    set.add(c);
    expect(c.slot).toBe(0);
    expect([...set].map((x) => x.name).sort()).toEqual(['b', 'c']);
    expect(set.size).toBe(2);
  });

  it('lets a loop over it delete and add', () => {
    const set = new SlotSet<Slotted & { name: string }>();
    const items = ['a', 'b', 'c', 'd'].map(item);
    for (const x of items) set.add(x);
    const seen: string[] = [];
    for (const x of set) {
      seen.push(x.name);
      set.delete(x);
      if (x.name === 'a') set.add(item('late'));
    }
    expect(seen).toEqual(['a', 'b', 'c', 'd']);
    expect([...set].map((x) => x.name)).toEqual(['late']);
  });

  it('refuses an item that another SlotSet holds', () => {
    const a = item('a');
    new SlotSet<typeof a>().add(a);
    expect(() => new SlotSet<typeof a>().add(a)).toThrow(/another SlotSet/);
  });
});

describe('IdTable', () => {
  it('keeps values by id, and doubles when two held ids share a slot', () => {
    const table = new IdTable<string>(4);
    table.set(1, 'one');
    table.set(2, 'two');
    table.set(5, 'five'); // 5 & 3 = 1, taken by 1: the table doubles
    table.set(2, 'TWO');
    expect(table.size).toBe(3);
    expect([table.get(1), table.get(2), table.get(5), table.get(9)]).toEqual(['one', 'TWO', 'five', undefined]);
    expect(table.has(5) && !table.has(13)).toBe(true);
    expect(table.delete(1)).toBe(true);
    expect(table.delete(1)).toBe(false);
    expect(table.size).toBe(2);
    expect(table.heldIds().sort((x, y) => x - y)).toEqual([2, 5]);
  });

  it('holds a long run of ids in sequence, a window at a time', () => {
    const table = new IdTable<number>();
    for (let id = 0; id < 100_000; id++) {
      table.set(id, id * 2);
      if (id >= 40) expect(table.delete(id - 40)).toBe(true);
    }
    expect(table.size).toBe(40);
    expect(table.get(99_999)).toBe(199_998);
    expect(table.get(99_959)).toBeUndefined();
  });

  it('refuses an id that is not a whole number ≥ 0', () => {
    const table = new IdTable<string>();
    expect(() => table.set(-1, 'x')).toThrow(RangeError);
    expect(() => table.set(1.5, 'x')).toThrow(RangeError);
  });
});

// In a process of its own with --expose-gc: a window of 32 items of ~1 KB churns through a
// long-lived collection after one major GC, and the old generation's growth is measured. A Set
// and a Map are the control: V8's obsolete hash tables keep every later entry alive until the
// next major GC, so everything that passes through is promoted. If the control stops growing,
// V8 has changed and churn-free.ts may no longer be needed.
const PROBE = `
const v8 = require('node:v8');
const { SlotSet, IdTable } = require(process.argv[1]);
const kind = process.argv[2];
const oldSpace = () => v8.getHeapSpaceStatistics().find((s) => s.space_name === 'old_space').space_used_size;
const window = [];
let step;
if (kind === 'Set' || kind === 'SlotSet') {
  const live = kind === 'Set' ? new Set() : new SlotSet();
  step = (i) => { const x = { slot: -1, body: 'x'.repeat(1000) + i }; live.add(x); window.push(x); if (window.length > 32) live.delete(window.shift()); };
} else {
  const live = kind === 'Map' ? new Map() : new IdTable();
  step = (i) => { live.set(i, { body: 'x'.repeat(1000) + i }); window.push(i); if (window.length > 32) live.delete(window.shift()); };
}
for (let i = 0; i < 100000; i++) step(i);
global.gc();
const before = oldSpace();
let most = before;
for (let i = 100000; i < 1100000; i++) { step(i); if (i % 20000 === 0) most = Math.max(most, oldSpace()); }
process.stdout.write(String((most - before) / 1048576));
`;

function oldGenerationGrowthMiB(kind: 'Set' | 'SlotSet' | 'Map' | 'IdTable'): number {
  // The build of this file (the tests' global setup rebuilds it when a source is newer).
  const built = path.join(__dirname, '..', '..', 'dist', 'base', 'churn-free.js');
  return Number(execFileSync(process.execPath, ['--expose-gc', '-e', PROBE, built, kind], { encoding: 'utf8', timeout: 60_000 }));
}

describe('churn after a major GC', () => {
  it('promotes what passes through a Set or Map, and not what passes through a SlotSet or IdTable', () => {
    const grown = {
      Set: oldGenerationGrowthMiB('Set'),
      SlotSet: oldGenerationGrowthMiB('SlotSet'),
      Map: oldGenerationGrowthMiB('Map'),
      IdTable: oldGenerationGrowthMiB('IdTable'),
    };
    // 1,000,000 items of ~1 KB went through each: ~1 GB allocated.
    expect(grown.Set).toBeGreaterThan(16);
    expect(grown.Map).toBeGreaterThan(16);
    expect(grown.SlotSet).toBeLessThan(8);
    expect(grown.IdTable).toBeLessThan(8);
  });
});
