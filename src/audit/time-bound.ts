// Time bounds as operators type them: an ISO-8601 date or timestamp, or a duration back from
// now (`90s`, `30m`, `24h`, `7d`, `2w`).
import { InputError } from '../http/errors';

const UNITS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

export function parseTimeBound(text: string, key: string, now = new Date()): Date {
  const relative = /^(\d+)\s*([smhdw])$/.exec(text.trim());
  if (relative) return new Date(now.getTime() - Number(relative[1]) * UNITS[relative[2]!]!);
  if (/^\d{4}-\d{2}-\d{2}([T ][\d:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(text.trim())) {
    const time = new Date(text.trim());
    if (!Number.isNaN(time.getTime())) return time;
  }
  throw new InputError(`${key}: "${text}" is neither an ISO-8601 time nor a duration like 30m, 24h or 7d`);
}
