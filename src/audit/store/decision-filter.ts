// The decision log's filters as operators write them (admin API query string, CLI options),
// checked once with zod: `allow` is true or false, no value carries a NUL (PostgreSQL text
// cannot), times are ISO-8601 or a duration back from now.
import { z } from 'zod';
import { InputError } from '../../base/errors';
import type { DecisionFilter } from './pg-decision-query-store';
import { parseTimeBound } from './time-bound';

export interface FilterText {
  subject?: string | undefined;
  org?: string | undefined;
  action?: string | undefined;
  allow?: string | undefined;
  code?: string | undefined;
  since?: string | undefined;
  until?: string | undefined;
}

const filterValue = z.string().refine((value) => !value.includes('\u0000'), 'must not contain a NUL character');

/** The filters' text (other keys are ignored here: the caller refuses unknown ones). */
export const filterTextSchema = z.object({
  subject: filterValue.optional(),
  org: filterValue.optional(),
  action: filterValue.optional(),
  allow: z.enum(['true', 'false'], { error: 'must be true or false' }).optional(),
  code: filterValue.optional(),
  since: filterValue.optional(),
  until: filterValue.optional(),
});

/** Parses `value` with `schema`, or throws an InputError naming the first bad key. */
export function parseInput<T extends z.ZodType>(schema: T, value: unknown): z.output<T> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  throw new InputError(`${issue.path.join('.') || 'input'}: ${issue.message}`);
}

export function parseDecisionFilter(text: FilterText, now = new Date()): DecisionFilter {
  const checked = parseInput(filterTextSchema, text);
  return {
    subject: checked.subject,
    organization: checked.org,
    action: checked.action,
    allow: checked.allow === undefined ? undefined : checked.allow === 'true',
    code: checked.code,
    since: checked.since === undefined ? undefined : parseTimeBound(checked.since, 'since', now),
    until: checked.until === undefined ? undefined : parseTimeBound(checked.until, 'until', now),
  };
}
