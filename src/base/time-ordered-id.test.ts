import { afterEach, describe, expect, it, jest } from '@jest/globals';
import { timeOrderedId } from './time-ordered-id';

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

const millisecondsOf = (id: string) => parseInt(id.replaceAll('-', '').slice(0, 12), 16);

describe('timeOrderedId', () => {
  afterEach(() => {
    jest.restoreAllMocks();
  });

  it('makes lower-case UUIDv7s whose first 48 bits are the time in milliseconds', () => {
    const before = Date.now();
    const id = timeOrderedId();
    const after = Date.now();
    expect(id).toMatch(UUID_V7);
    expect(millisecondsOf(id)).toBeGreaterThanOrEqual(before);
    expect(millisecondsOf(id)).toBeLessThanOrEqual(after);
  });

  it('makes distinct ids that sort in the order they were made', () => {
    const ids = Array.from({ length: 10_000 }, () => timeOrderedId());
    expect(new Set(ids).size).toBe(ids.length);
    expect([...ids].sort()).toEqual(ids);
  });

  it('ends in 62 random bits that differ from id to id, across blocks of the random pool', () => {
    const tails = Array.from({ length: 2_000 }, () => timeOrderedId().slice(19).replace('-', ''));
    expect(new Set(tails).size).toBe(tails.length);
    // Every hex digit turns up after the variant digit: the bytes are written whole.
    const digits = new Set(tails.flatMap((tail) => [...tail.slice(1)]));
    expect(digits.size).toBe(16);
  });

  it('counts within one millisecond, and takes the next millisecond after 4,096 ids in one', () => {
    const now = Date.now() + 60_000;
    jest.spyOn(Date, 'now').mockReturnValue(now);
    const ids = Array.from({ length: 5_000 }, () => timeOrderedId());
    expect(ids.every((id) => UUID_V7.test(id))).toBe(true);
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids).size).toBe(ids.length);
    expect(millisecondsOf(ids[0]!)).toBe(now);
    expect(ids[0]!.slice(15, 18)).toBe('000');
    expect(millisecondsOf(ids[4_095]!)).toBe(now);
    expect(ids[4_095]!.slice(15, 18)).toBe('fff');
    expect(millisecondsOf(ids[4_096]!)).toBe(now + 1);
  });

  it('keeps counting up when the clock goes back', () => {
    const now = Date.now() + 120_000;
    jest.spyOn(Date, 'now').mockReturnValue(now);
    const first = timeOrderedId();
    jest.spyOn(Date, 'now').mockReturnValue(now - 5_000);
    const second = timeOrderedId();
    expect(second > first).toBe(true);
    expect(millisecondsOf(second)).toBe(now);
  });
});
