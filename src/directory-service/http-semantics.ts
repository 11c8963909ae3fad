// What makes the directory's writes safe to retry and to race, and its lists safe to page:
// strong ETags with If-Match, stored answers for POSTs carrying an Idempotency-Key, and
// keyset pagination with opaque cursors.
import { createHash } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { Knex } from 'knex';
import { z } from 'zod';
import { ConflictError, InputError } from '../base/errors';

/** JSON with object keys sorted, so equal values always hash alike. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, item: unknown) =>
    item !== null && typeof item === 'object' && !Array.isArray(item)
      ? Object.fromEntries(Object.entries(item as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : item,
  );
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('base64url');

/** A strong ETag of a representation (the JSON a GET of it answers). */
export function etagOf(representation: unknown): string {
  return `"${sha256(canonicalJson(representation) ?? 'null')}"`;
}

/** 412 when If-Match is present and names none of the current ETag (`*` matches any existing resource). */
export function requireIfMatch(headers: IncomingHttpHeaders, currentEtag: string): void {
  const ifMatch = headers['if-match'];
  if (ifMatch === undefined) return;
  const tags = ifMatch.split(',').map((tag) => tag.trim());
  if (tags.includes('*') || tags.includes(currentEtag)) return;
  throw new InputError(`If-Match ${ifMatch} is stale: the resource changed (its ETag is now ${currentEtag}); read it again and retry`, 412);
}

/** True when If-None-Match names this ETag (a GET answers 304). */
export function notModified(headers: IncomingHttpHeaders, etag: string): boolean {
  const tags = headers['if-none-match']?.split(',').map((tag) => tag.trim().replace(/^W\//, ''));
  return tags !== undefined && (tags.includes('*') || tags.includes(etag));
}

/** The first answer to a POST, replayed to a retry carrying the same Idempotency-Key. */
export interface StoredAnswer {
  status: number;
  headers: Record<string, string>;
  body: unknown;
}

export interface IdempotentRequest {
  actor: string;
  key: string;
  method: string;
  path: string;
  body: unknown;
}

/** A claimed key: `status` is null until the operation has answered. */
interface IdempotencyKeyRow {
  actor: string;
  key: string;
  method: string;
  path: string;
  body_hash: string;
  status: number | null;
  headers: Record<string, string> | null;
  body: unknown;
  created_at: Date;
}

const IDEMPOTENCY_WINDOW = "interval '24 hours'";
/** Longer than any operation may run (statements time out after 10 s). */
const ABANDONED_AFTER = "interval '1 minute'";
/** Expired keys are deleted on roughly one claim in this many. */
const PRUNE_EVERY = 100;

/**
 * Stored answers keyed by (actor, Idempotency-Key), for 24 hours. A key is claimed before the
 * operation runs, so two concurrent retries never both perform it: the second gets 409 until
 * the first has answered, then the first answer.
 */
export class IdempotencyStore {
  private claims = 0;

  constructor(private readonly db: Knex) {}

  /** `claimed`: run the operation, then `complete` or `release`; `replay`: answer this instead. */
  async claim(request: IdempotentRequest): Promise<{ kind: 'claimed' } | { kind: 'replay'; answer: StoredAnswer }> {
    if (++this.claims % PRUNE_EVERY === 0)
      await this.db('idempotency_keys').whereRaw(`created_at < now() - ${IDEMPOTENCY_WINDOW}`).delete();
    const bodyHash = sha256(canonicalJson(request.body ?? null));
    const { actor, key } = request;
    // Expired, or claimed by a request that never answered (its process died): free again.
    await this.db('idempotency_keys')
      .where({ actor, key })
      .andWhere((expired) => {
        expired
          .whereRaw(`created_at < now() - ${IDEMPOTENCY_WINDOW}`)
          .orWhereRaw(`status is null and created_at < now() - ${ABANDONED_AFTER}`);
      })
      .delete();
    const inserted = await this.db('idempotency_keys')
      .insert({ actor, key, method: request.method, path: request.path, body_hash: bodyHash })
      .onConflict(['actor', 'key'])
      .ignore()
      .returning('key');
    if (inserted.length > 0) return { kind: 'claimed' };

    const row = await this.db<IdempotencyKeyRow>('idempotency_keys').where({ actor, key }).first();
    if (!row) return this.claim(request); // expired and deleted by a concurrent claim
    if (row.method !== request.method || row.path !== request.path || row.body_hash !== bodyHash) {
      throw new InputError(
        `Idempotency-Key ${key} was already used with another request (${row.method} ${row.path}, another body); use a new key`,
        422,
      );
    }
    if (row.status === null)
      throw new ConflictError(`a request with Idempotency-Key ${key} is still in progress; retry when it has answered`);
    return { kind: 'replay', answer: { status: row.status, headers: row.headers ?? {}, body: row.body } };
  }

  async complete(actor: string, key: string, answer: StoredAnswer): Promise<void> {
    await this.db('idempotency_keys')
      .where({ actor, key })
      .update({
        status: answer.status,
        headers: JSON.stringify(answer.headers),
        body: answer.body === undefined ? null : JSON.stringify(answer.body),
      });
  }

  /** The operation failed: the key is free for a retry. */
  async release(actor: string, key: string): Promise<void> {
    await this.db('idempotency_keys').where({ actor, key }).whereNull('status').delete();
  }
}

/** The query of every list operation: `?limit=1..100` (default 50) and `?cursor=` from the previous page. */
export const pageQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(100).default(50),
  cursor: z.string().min(1).optional(),
});
export type PageQuery = z.infer<typeof pageQuery>;

/** The response of a list operation. */
export const pageOf = <T extends z.ZodType>(item: T) => z.object({ items: z.array(item), next_cursor: z.string().nullable() });

export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

export interface PageOrder {
  /**
   * The columns the list is ordered by, together unique (end with an id), compared as one
   * row value. Use text, uuid or integer columns: a timestamp loses its microseconds in JSON.
   */
  columns: readonly { column: string; field: string }[];
  direction?: 'asc' | 'desc';
}

/**
 * One page of `query` (which selects the `field`s of `order.columns`, among others): keyset
 * pagination, so pages stay stable while rows are added or removed before the cursor.
 */
export async function paginate<Row extends object>(query: Knex.QueryBuilder, page: PageQuery, order: PageOrder): Promise<Page<Row>> {
  const direction = order.direction ?? 'asc';
  const columns = order.columns.map((entry) => entry.column);
  if (page.cursor !== undefined) {
    const after = decodeCursor(page.cursor, columns.length);
    const placeholders = columns.map(() => '?').join(', ');
    query.whereRaw(`(${columns.map(() => '??').join(', ')}) ${direction === 'asc' ? '>' : '<'} (${placeholders})`, [...columns, ...after]);
  }
  for (const column of columns) query.orderBy(column, direction);
  const rows = (await query.limit(page.limit + 1)) as Row[];
  const items = rows.slice(0, page.limit);
  const last = items.at(-1);
  const more = rows.length > page.limit && last !== undefined;
  return {
    items,
    next_cursor: more ? encodeCursor(order.columns.map((entry) => String((last as Record<string, unknown>)[entry.field]))) : null,
  };
}

function encodeCursor(values: string[]): string {
  return Buffer.from(JSON.stringify(values)).toString('base64url');
}

function decodeCursor(cursor: string, length: number): string[] {
  let values: unknown;
  try {
    values = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    values = undefined;
  }
  if (!Array.isArray(values) || values.length !== length || !values.every((value) => typeof value === 'string')) {
    throw new InputError('cursor is not one this list gave out: pass next_cursor from the previous page unchanged');
  }
  return values;
}
