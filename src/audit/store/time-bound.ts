// Time bounds as operators type them: an ISO-8601 date or timestamp, or a duration back from
// now (`90s`, `30m`, `24h`, `7d`, `2w`). A date, or a time without an offset, is UTC (never the
// machine's zone), and a bound must be a real instant PostgreSQL can compare with.
import { InputError } from '../../base/errors';

const UNITS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

const RELATIVE = /^(\d+)\s*([smhdw])$/;
const ABSOLUTE = /^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?(?:([Zz])|([+-])(\d{2}):?(\d{2}))?$/;

/** Years 1 to 9999: what four-digit ISO-8601 years (and every PostgreSQL timestamptz) can hold. */
const EARLIEST = Date.parse('0001-01-01T00:00:00Z');
const LATEST = Date.parse('9999-12-31T23:59:59.999Z');

export function parseTimeBound(text: string, key: string, now = new Date()): Date {
  const trimmed = text.trim();
  const relative = RELATIVE.exec(trimmed);
  const time = relative ? new Date(now.getTime() - Number(relative[1]) * UNITS[relative[2]!]!) : absolute(trimmed);
  if (time === undefined)
    throw new InputError(`${key}: ${JSON.stringify(text)} is neither an ISO-8601 time nor a duration like 30m, 24h or 7d`);
  if (!(time.getTime() >= EARLIEST && time.getTime() <= LATEST))
    throw new InputError(`${key}: ${JSON.stringify(text)} is out of range (years 0001 to 9999)`);
  return time;
}

/** A calendar-checked ISO-8601 time (2026-02-30 is refused, not moved to March); undefined if not one. */
function absolute(text: string): Date | undefined {
  const match = ABSOLUTE.exec(text);
  if (!match) return undefined;
  const [, year, month, day, hour = '0', minute = '0', second = '0', fraction = '', , sign, offsetHours = '0', offsetMinutes = '0'] = match;
  const parts = [year, month, day, hour, minute, second].map(Number) as [number, number, number, number, number, number];
  const [y, mo, d, h, mi, s] = parts;
  if (mo < 1 || mo > 12 || d < 1 || d > daysIn(y, mo) || h > 23 || mi > 59 || s > 59) return undefined;
  if (Number(offsetHours) > 23 || Number(offsetMinutes) > 59) return undefined;
  // Date.UTC maps years 0-99 to 1900-1999; setUTCFullYear does not.
  const utc = new Date(Date.UTC(2000, mo - 1, d, h, mi, s, Number(fraction.padEnd(3, '0').slice(0, 3))));
  utc.setUTCFullYear(y);
  const offsetMs = (Number(offsetHours) * 60 + Number(offsetMinutes)) * 60_000;
  return new Date(utc.getTime() - (sign === '-' ? -offsetMs : sign === '+' ? offsetMs : 0));
}

function daysIn(year: number, month: number): number {
  return month === 2 ? (year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28) : [4, 6, 9, 11].includes(month) ? 30 : 31;
}
