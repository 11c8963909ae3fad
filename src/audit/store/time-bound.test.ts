// Time bounds as operators type them: a time without an offset, like a date, is UTC; impossible
// dates and instants PostgreSQL cannot hold are refused. (The same reading in a non-UTC machine
// zone, through the real CLI, is pinned in test/audit-query.test.ts.)
import { InputError } from '../../base/errors';
import { parseTimeBound } from './time-bound';

const NOW = new Date('2026-11-30T12:00:00.000Z');
const parsed = (text: string) => parseTimeBound(text, 'since', NOW).toISOString();

describe('parseTimeBound', () => {
  it('reads a date, and a time without an offset, as UTC', () => {
    expect(parsed('2026-11-30')).toBe('2026-11-30T00:00:00.000Z');
    expect(parsed('2026-11-30T10:00:00')).toBe('2026-11-30T10:00:00.000Z');
    expect(parsed('2026-11-30 10:00')).toBe('2026-11-30T10:00:00.000Z');
    expect(parsed('2026-11-30t10:00:00.123456')).toBe('2026-11-30T10:00:00.123Z');
  });

  it('applies an offset when there is one', () => {
    expect(parsed('2026-11-30T10:00:00Z')).toBe('2026-11-30T10:00:00.000Z');
    expect(parsed('2026-11-30T10:00:00+02:00')).toBe('2026-11-30T08:00:00.000Z');
    expect(parsed('2026-11-30T10:00-0530')).toBe('2026-11-30T15:30:00.000Z');
  });

  it('reads a duration back from now', () => {
    expect(parsed('90s')).toBe('2026-11-30T11:58:30.000Z');
    expect(parsed(' 24h ')).toBe('2026-11-29T12:00:00.000Z');
    expect(parsed('2w')).toBe('2026-11-16T12:00:00.000Z');
  });

  it('accepts the first and the last instant of years 0001 to 9999', () => {
    expect(parsed('0001-01-01')).toBe('0001-01-01T00:00:00.000Z');
    expect(parsed('9999-12-31T23:59:59.999Z')).toBe('9999-12-31T23:59:59.999Z');
    expect(parsed('2028-02-29')).toBe('2028-02-29T00:00:00.000Z');
  });

  it.each([
    ['2026-02-30', /neither an ISO-8601 time/],
    ['2027-02-29', /neither/],
    ['2026-13-01', /neither/],
    ['2026-11-30T24:00', /neither/],
    ['2026-11-30T10:60', /neither/],
    ['2026-11-30T10:00+24:00', /neither/],
    ['2026-11-30T1', /neither/],
    ['99999-01-01', /neither/],
    ['-5h', /neither/],
    ['1e309d', /neither/],
    ['tomorrow', /neither/],
    ['0000-12-31', /out of range \(years 0001 to 9999\)/],
    ['0001-01-01T00:00:00+00:01', /out of range/],
    ['9999-12-31T23:00:00-01:00', /out of range/],
    ['99999999999999999999d', /out of range/],
    ['3000000d', /out of range/],
  ])('refuses %j, naming the key', (text, message) => {
    expect(() => parseTimeBound(text, 'since', NOW)).toThrow(InputError);
    expect(() => parseTimeBound(text, 'since', NOW)).toThrow(message);
    expect(() => parseTimeBound(text, 'since', NOW)).toThrow(/^since: /);
  });
});
