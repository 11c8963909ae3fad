// The decision log's filters as operators write them (admin API query string, CLI options),
// checked once: `allow` is true or false, times are ISO-8601 or a duration back from now.
import { InputError } from '../http/errors';
import type { DecisionFilter } from './pg-decision-query-store';
import { parseTimeBound } from './time-bound';

export interface FilterText {
  subject?: string | undefined;
  org?: string | undefined;
  action?: string | undefined;
  allow?: string | undefined;
  since?: string | undefined;
  until?: string | undefined;
}

export function parseDecisionFilter(text: FilterText, now = new Date()): DecisionFilter {
  if (text.allow !== undefined && text.allow !== 'true' && text.allow !== 'false') throw new InputError('allow: must be true or false');
  return {
    subject: text.subject,
    organization: text.org,
    action: text.action,
    allow: text.allow === undefined ? undefined : text.allow === 'true',
    since: text.since === undefined ? undefined : parseTimeBound(text.since, 'since', now),
    until: text.until === undefined ? undefined : parseTimeBound(text.until, 'until', now),
  };
}
