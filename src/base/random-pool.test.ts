import { describe, expect, it } from '@jest/globals';
import { RandomPool } from './random-pool';

describe('RandomPool', () => {
  it('hands out each byte of a block once, then refills the block with new bytes', () => {
    const pool = new RandomPool(16);
    const first = pool.take(8);
    const second = pool.take(8);
    expect([first, second]).toEqual([0, 8]);
    const blockBefore = Buffer.from(pool.bytes);
    // Not enough left for 4 more: a new block, from its start.
    expect(pool.take(4)).toBe(0);
    expect(pool.bytes.equals(blockBefore)).toBe(false);
  });

  it('refills when what is asked for does not fit in what is left, rather than reading past it', () => {
    const pool = new RandomPool(10);
    expect(pool.take(8)).toBe(0);
    expect(pool.take(4)).toBe(0);
    expect(pool.take(4)).toBe(4);
    expect(pool.take(4)).toBe(0);
  });
});
