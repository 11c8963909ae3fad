// The decisions page's query string: every filter an operator can set, parsed once (a bad
// value is an InputError naming its parameter), and written back as links, so a filtered view
// is a URL that can be bookmarked and shared. Relative times (`since=24h`) stay relative in the
// URL; the next-page link pins them to the instants the first page used.
import { InputError } from '../../base/errors';
import { parseTimeBound } from '../../audit/store/time-bound';
import type { ConsoleFilter, Outcome } from './console-store';

export const FILTER_PARAMETERS = [
  'since',
  'until',
  'outcome',
  'status',
  'subject',
  'user',
  'org',
  'action',
  'route',
  'reason',
  'revision',
  'id',
  'request_id',
] as const;
export type FilterParameter = (typeof FILTER_PARAMETERS)[number];
export type FilterValues = Partial<Record<FilterParameter, string>>;

const OUTCOMES: readonly Outcome[] = ['allowed', 'denied', 'failed'];
const MAX_VALUE = 512;

/** The filters as written (blank fields dropped) and the before-seq of a next page. */
export function readFilterValues(query: Record<string, unknown>): { values: FilterValues; beforeSeq: number | undefined } {
  const values: FilterValues = {};
  for (const name of FILTER_PARAMETERS) {
    const raw = query[name];
    if (raw === undefined) continue;
    if (typeof raw !== 'string') throw new InputError(`${name}: is given more than once`);
    const value = raw.trim();
    if (value.length > MAX_VALUE || value.includes('\u0000'))
      throw new InputError(`${name}: must be at most ${MAX_VALUE} characters without NUL`);
    if (value !== '') values[name] = value;
  }
  const before = query.before;
  let beforeSeq: number | undefined;
  if (before !== undefined) {
    if (typeof before !== 'string' || !/^\d{1,15}$/.test(before)) throw new InputError('before: must be a decision seq');
    beforeSeq = Number(before);
  }
  return { values, beforeSeq };
}

export function toFilter(values: FilterValues, now = new Date()): ConsoleFilter {
  const { outcome, status } = values;
  if (outcome !== undefined && !OUTCOMES.includes(outcome as Outcome))
    throw new InputError(`outcome: must be one of ${OUTCOMES.join(', ')}`);
  if (status !== undefined && !/^[1-5]\d\d$/.test(status)) throw new InputError('status: must be an HTTP status (100 to 599)');
  return {
    since: values.since === undefined ? undefined : parseTimeBound(values.since, 'since', now),
    until: values.until === undefined ? undefined : parseTimeBound(values.until, 'until', now),
    outcome: outcome as Outcome | undefined,
    status: status === undefined ? undefined : Number(status),
    subject: values.subject,
    userRef: values.user,
    organization: values.org,
    action: values.action,
    route: values.route,
    reason: values.reason,
    revision: values.revision,
    decisionId: values.id,
    requestId: values.request_id,
  };
}

/** A query string of `values` plus `extra` (blank ones left out). */
export function queryString(values: FilterValues, extra: Record<string, string | number | undefined> = {}): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries({ ...values, ...extra }))
    if (value !== undefined && value !== '') params.set(key, String(value));
  const text = params.toString();
  return text ? `?${text}` : '';
}

/** The same filters with the time window pinned to the instants `filter` resolved to. */
export function pinned(values: FilterValues, filter: ConsoleFilter): FilterValues {
  return { ...values, since: filter.since?.toISOString() ?? values.since, until: filter.until?.toISOString() ?? values.until };
}
