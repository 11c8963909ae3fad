// The tamper-evident form of a decision record: its canonical JSON (sorted keys, no spaces,
// ISO-8601 UTC milliseconds) and the hash chain over it. The same functions hash a record
// before it is stored and re-derive the hash from the stored row when the chain is verified.
import { createHash } from 'node:crypto';
import type { DecisionRecord } from './decision-record';

/** The `prev_hash` of the very first record. */
export const GENESIS_HASH = '0'.repeat(64);

/** A record ready to be appended: `content` is its canonical JSON, also the spool's line format. */
export interface PreparedDecision {
  id: string;
  /** ISO-8601 UTC with milliseconds, exactly as hashed. */
  time: string;
  content: string;
}

/** The stored, hashed fields of a decision: the `decisions` columns other than seq and the hashes. */
export interface DecisionContent {
  id: string;
  time: string;
  request_id: string;
  subject: string | null;
  user_id: string | null;
  organization: string | null;
  action: string;
  resource: unknown;
  method: string;
  path: string;
  allow: boolean;
  status: number;
  reasons: string[];
  policy_revision: string | null;
  eval_latency_us: number | null;
  input: unknown;
  /** Present only when true, so records written before the column existed keep their hashes. */
  dry_run?: true;
}

export function contentOf(record: DecisionRecord): DecisionContent {
  const content: DecisionContent = {
    id: record.id,
    time: record.time.toISOString(),
    request_id: record.requestId,
    subject: record.subject,
    user_id: record.userId,
    organization: record.organization,
    action: record.action,
    resource: record.resource,
    method: record.method,
    path: record.path,
    allow: record.allow,
    status: record.status,
    reasons: record.reasons,
    policy_revision: record.policyRevision,
    eval_latency_us: record.evalLatencyUs,
    input: record.input ?? null,
  };
  if (record.dryRun === true) content.dry_run = true;
  return content;
}

/** The hashed content of a stored row, as node-pg returns it (timestamptz as Date, jsonb parsed). */
export function contentOfRow(row: Record<string, unknown>): DecisionContent {
  const content: DecisionContent = {
    id: row.id as string,
    time: (row.time as Date).toISOString(),
    request_id: row.request_id as string,
    subject: row.subject as string | null,
    user_id: row.user_id as string | null,
    organization: row.organization as string | null,
    action: row.action as string,
    resource: row.resource,
    method: row.method as string,
    path: row.path as string,
    allow: row.allow as boolean,
    status: row.status as number,
    reasons: row.reasons as string[],
    policy_revision: row.policy_revision as string | null,
    eval_latency_us: row.eval_latency_us as number | null,
    input: row.input ?? null,
  };
  if (row.dry_run === true) content.dry_run = true;
  return content;
}

export function prepareDecision(record: DecisionRecord): PreparedDecision {
  const content = contentOf(record);
  return { id: content.id, time: content.time, content: canonicalJson(content) };
}

/** Reads a spool line (canonical content) back into a prepared record. */
export function preparedFromContent(line: string): PreparedDecision {
  const parsed = JSON.parse(line) as { id?: unknown; time?: unknown };
  if (typeof parsed.id !== 'string' || typeof parsed.time !== 'string') throw new Error('not a decision record: id or time is missing');
  return { id: parsed.id, time: parsed.time, content: line };
}

/** hex SHA-256 of `prev_hash \n seq \n canonical content`. */
export function chainHash(prevHash: string, seq: number, content: string): string {
  return createHash('sha256').update(`${prevHash}\n${seq}\n`).update(content).digest('hex');
}

// PostgreSQL refuses NUL in text and jsonb, and lone surrogates in jsonb: either would make a
// record unwritable forever, so they become U+FFFD before hashing (idempotent, so a stored
// value canonicalizes to itself).
const UNSTORABLE = /[\u0000\ud800-\udfff]/;
// JSON.stringify writes both as escapes; without one of these in the output there is nothing
// to replace, and the common case skips a test per string (verify canonicalizes a million records).
const ESCAPED_UNSTORABLE = /\\u(0000|d[89a-f])/i;

function storable(text: string): string {
  if (!UNSTORABLE.test(text)) return text;
  return (text as string & { toWellFormed(): string }).toWellFormed().replace(/\u0000/g, '\ufffd');
}

/**
 * JSON with object keys sorted (JavaScript's default UTF-16 order) at every level, no
 * whitespace, and the same value rules as JSON.stringify (toJSON, undefined members dropped,
 * non-finite numbers as null). Values read back from jsonb canonicalize to the same text.
 */
export function canonicalJson(value: unknown): string {
  const text = write(value, false) ?? 'null';
  return ESCAPED_UNSTORABLE.test(text) ? (write(value, true) ?? 'null') : text;
}

function write(value: unknown, clean: boolean): string | undefined {
  switch (typeof value) {
    case 'string':
      return JSON.stringify(clean ? storable(value) : value);
    case 'number':
      return Number.isFinite(value) ? JSON.stringify(value) : 'null';
    case 'boolean':
      return value ? 'true' : 'false';
    case 'bigint':
      return value.toString();
    case 'object': {
      if (value === null) return 'null';
      const withJson = value as { toJSON?: () => unknown };
      if (typeof withJson.toJSON === 'function') return write(withJson.toJSON(), clean);
      if (Array.isArray(value)) {
        let out = '[';
        for (let i = 0; i < value.length; i++) out += (i === 0 ? '' : ',') + (write(value[i], clean) ?? 'null');
        return `${out}]`;
      }
      const object = value as Record<string, unknown>;
      const keys = Object.keys(object).sort();
      let out = '{';
      let first = true;
      for (const key of keys) {
        const item = write(object[key], clean);
        if (item === undefined) continue;
        out += `${first ? '' : ','}${JSON.stringify(clean ? storable(key) : key)}:${item}`;
        first = false;
      }
      return `${out}}`;
    }
    default:
      return undefined;
  }
}
