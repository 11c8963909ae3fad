// Cursors of the decision log's newest-first pages (admin API). A cursor is opaque base64url
// JSON bound to the query that made it: the seq to continue below, the time window as the
// first page resolved it (so `since=24h` means the same instants on every page), and a hash of
// the filters and that window, so a cursor replayed with other filters is refused.
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { InputError } from '../../base/errors';
import { parseDecisionFilter, parseInput, type FilterText } from './decision-filter';
import type { DecisionFilter } from './pg-decision-query-store';
import { parseTimeBound } from './time-bound';

export interface DecisionQuery {
  filter: DecisionFilter;
  /** Only records with a smaller seq (the previous page ended here); undefined on the first page. */
  beforeSeq: number | undefined;
  /** The cursor of the page that continues below `seq` with this same query. */
  cursorAfter(seq: number): string;
}

const cursorSchema = z.strictObject({
  seq: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
  since: z.iso.datetime().nullable(),
  until: z.iso.datetime().nullable(),
  filters: z.string().regex(/^[0-9a-f]{32}$/),
});

type CursorState = z.output<typeof cursorSchema>;

const NOT_A_CURSOR = 'cursor: not a cursor this API returned';

/** The filters of a page request; with a cursor, its window and position, once it matches them. */
export function openDecisionQuery(text: FilterText, cursor: string | undefined, now = new Date()): DecisionQuery {
  const filter = parseDecisionFilter(text, now);
  let beforeSeq: number | undefined;
  if (cursor !== undefined) {
    const state = decode(cursor);
    filter.since = state.since === null ? undefined : bound(state.since);
    filter.until = state.until === null ? undefined : bound(state.until);
    if (binding(text, filter) !== state.filters) {
      throw new InputError('cursor: it belongs to a query with other filters; repeat that query, or leave the cursor out to start again');
    }
    beforeSeq = state.seq;
  }
  return {
    filter,
    beforeSeq,
    cursorAfter: (seq) => {
      const state: CursorState = {
        seq,
        since: filter.since?.toISOString() ?? null,
        until: filter.until?.toISOString() ?? null,
        filters: binding(text, filter),
      };
      return Buffer.from(JSON.stringify(state), 'utf8').toString('base64url');
    },
  };
}

function decode(cursor: string): CursorState {
  let json: unknown;
  try {
    json = /^[\w-]{1,1024}$/.test(cursor) ? JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) : undefined;
  } catch {
    json = undefined;
  }
  try {
    return parseInput(cursorSchema, json);
  } catch {
    throw new InputError(NOT_A_CURSOR);
  }
}

/** A window bound as the cursor stored it: an ISO-8601 instant PostgreSQL accepts. */
function bound(text: string): Date {
  try {
    return parseTimeBound(text, 'cursor');
  } catch {
    throw new InputError(NOT_A_CURSOR);
  }
}

/** What ties a cursor to its query: the filters as written and the window they resolved to. */
function binding(text: FilterText, filter: DecisionFilter): string {
  // `code` joins only when given, so cursors of queries without it stay valid.
  const written = [
    text.subject,
    text.org,
    text.action,
    text.allow,
    text.since?.trim(),
    text.until?.trim(),
    ...(text.code !== undefined ? [text.code] : []),
  ].map((value) => value ?? null);
  const window = [filter.since?.toISOString() ?? null, filter.until?.toISOString() ?? null];
  return createHash('sha256')
    .update(JSON.stringify([...written, ...window]))
    .digest('hex')
    .slice(0, 32);
}
