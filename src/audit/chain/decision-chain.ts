// The tamper-evident form of a decision record: its canonical JSON (the text PostgreSQL's jsonb
// writes for it, times as ISO-8601 UTC milliseconds) and the hash chain over it. The gateway
// hashes a record before storing it; verification hashes what PostgreSQL renders of the row.
import { hash } from 'node:crypto';
import type { DecisionRecord } from '../decision-record';

/** The `prev_hash` of the very first record of a chain. */
export const GENESIS_HASH = '0'.repeat(64);

/**
 * The chain of the records written before each instance had its own (migration
 * 20261130000030): hashed over their seq alone, as they always were. It takes no new records,
 * so no instance may be named like it.
 */
export const LEGACY_CHAIN = 'legacy';

/** What audit.instance_id (a chain's name) may be: short, and safe in logs, file names and lock keys. */
export const CHAIN_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

/** A record ready to be appended: `content` is its canonical JSON, also the spool's line format. */
export interface PreparedDecision {
  id: string;
  /** ISO-8601 UTC with milliseconds, exactly as hashed. */
  time: string;
  content: string;
  /**
   * Where the policy input's canonical text is in `content` ([inputStart, inputEnd)): the store
   * keeps it as that text (`input_text`), which PostgreSQL neither parses nor takes apart.
   */
  inputStart: number;
  inputEnd: number;
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
  /** Present only when known, for the same reason. */
  directory_version?: number;
  /** Present only when the decision has a code (and params), for the same reason. */
  code?: string;
  code_params?: Record<string, unknown>;
}

export function prepareDecision(record: DecisionRecord): PreparedDecision {
  // uuid columns come back lower-case.
  const id = record.id.toLowerCase();
  const time = record.time.toISOString();
  const written = writeRecord(record, id, time, false);
  const { content, inputStart, inputEnd } = needsCleaning(written.content) ? writeRecord(record, id, time, true) : written;
  return { id, time, content, inputStart, inputEnd };
}

/** The member that precedes the input in a record's canonical text (only scalars come before it). */
const INPUT_MEMBER = ', "input": ';

/**
 * A record's DecisionContent written straight from it, members in canonical order (that is
 * jsonbKeyOrder of the column names below): no copy of the record, nothing to sort, and each
 * member appended as one constant and its value.
 */
function writeRecord(record: DecisionRecord, id: string, time: string, clean: boolean): Omit<PreparedDecision, 'id' | 'time'> {
  let out = '{"id": ' + column(id, clean);
  if (typeof record.code === 'string') out += ', "code": ' + column(record.code, clean);
  out += ', "path": ' + column(record.path, clean);
  out += ', "time": ' + column(time, clean);
  out += ', "allow": ' + column(record.allow, clean);
  out += INPUT_MEMBER;
  const inputStart = out.length;
  out += column(record.input ?? null, clean);
  const inputEnd = out.length;
  out += ', "action": ' + column(record.action, clean);
  out += ', "method": ' + column(record.method, clean);
  out += ', "status": ' + column(record.status, clean);
  if (record.dryRun === true) out += ', "dry_run": true';
  out += ', "reasons": ' + column(record.reasons, clean);
  out += ', "subject": ' + column(record.subject, clean);
  out += ', "user_id": ' + column(record.userId?.toLowerCase() ?? null, clean);
  out += ', "resource": ' + column(record.resource, clean);
  out += ', "request_id": ' + column(record.requestId, clean);
  const codeParams = record.codeParams ? write(record.codeParams, clean) : undefined;
  if (codeParams !== undefined) out += ', "code_params": ' + codeParams;
  out += ', "organization": ' + column(record.organization, clean);
  out += ', "eval_latency_us": ' + column(record.evalLatencyUs, clean);
  out += ', "policy_revision": ' + column(record.policyRevision, clean);
  if (typeof record.directoryVersion === 'number') out += ', "directory_version": ' + column(record.directoryVersion, clean);
  return { content: out + '}', inputStart, inputEnd };
}

/** A column's value: one that JSON cannot hold (a function) is null, as PostgreSQL renders the column. */
function column(value: unknown, clean: boolean): string {
  return write(value, clean) ?? 'null';
}

/** Reads a spool line (canonical content) back into a prepared record. */
export function preparedFromContent(line: string): PreparedDecision {
  const parsed = JSON.parse(line) as { id?: unknown; time?: unknown };
  if (typeof parsed.id !== 'string' || typeof parsed.time !== 'string') throw new Error('not a decision record: id or time is missing');
  // The first such member is the record's own: in a string before it, its quotes would be escaped.
  const member = line.indexOf(INPUT_MEMBER);
  if (member === -1) throw new Error('not a decision record: the input is missing');
  const inputStart = member + INPUT_MEMBER.length;
  return { id: parsed.id, time: parsed.time, content: line, inputStart, inputEnd: jsonValueEnd(line, inputStart) };
}

/** Where the JSON value that starts at `start` in valid JSON `text` ends (exclusive). */
export function jsonValueEnd(text: string, start: number): number {
  let depth = 0;
  for (let i = start; i < text.length; i++) {
    const char = text[i];
    if (char === '"') {
      for (i += 1; text[i] !== '"'; i += text[i] === '\\' ? 2 : 1) if (i >= text.length) throw new Error('unterminated string in JSON');
      if (depth === 0) return i + 1;
    } else if (char === '{' || char === '[') depth += 1;
    else if (char === '}' || char === ']') {
      if (depth === 0) return i;
      depth -= 1;
      if (depth === 0) return i + 1;
    } else if (char === ',' && depth === 0) return i;
  }
  return text.length;
}

/**
 * hex SHA-256 of `prev_hash \n chain \n seq \n canonical content`, `seq` being the record's
 * position in its chain: a record moved to another chain, or to another place, no longer
 * matches. The legacy chain's records keep their form, `prev_hash \n seq \n content`.
 */
export function chainHash(prevHash: string, chain: string, seq: number, content: string): string {
  const position = chain === LEGACY_CHAIN ? `${seq}` : `${chain}\n${seq}`;
  return hash('sha256', `${prevHash}\n${position}\n${content}`, 'hex');
}

// PostgreSQL refuses NUL in text and jsonb, and lone surrogates in jsonb: either would make a
// record unwritable forever, so they become U+FFFD before hashing (idempotent, so a stored
// value canonicalizes to itself).
const SURROGATES = /[\ud800-\udfff]/;
// JSON.stringify writes both as escapes; without one of these in the output there is nothing
// to replace, and the common case skips a test per string.
const ESCAPED_UNSTORABLE = /\\u(0000|d[89a-f])/i;

/**
 * Whether the text holds one of those escapes. JSON.stringify writes every `\u` escape in lower
 * case, so a text without `\u` (most records) has none, and a substring search rules that out
 * before the case-insensitive pattern runs over the whole text: ~1 µs of a record's ~10.5 in a
 * micro-benchmark.
 */
function needsCleaning(text: string): boolean {
  return text.includes('\\u') && ESCAPED_UNSTORABLE.test(text);
}

function storable(text: string): string {
  if (!text.includes('\u0000') && !SURROGATES.test(text)) return text;
  return (text as string & { toWellFormed(): string }).toWellFormed().replaceAll('\u0000', '\ufffd');
}

/** PostgreSQL's jsonb key order: shorter keys (in UTF-8 bytes) first, equal lengths by their bytes. */
export function jsonbKeyOrder(a: string, b: string): number {
  const lengths = Buffer.byteLength(a) - Buffer.byteLength(b);
  if (lengths !== 0 || a === b) return lengths;
  // Without surrogates, UTF-16 code-unit order is code-point order, which is UTF-8 byte order:
  // no need to encode both keys (two buffers per comparison).
  if (!SURROGATES.test(a) && !SURROGATES.test(b)) return a < b ? -1 : 1;
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

/**
 * Canonical text of frozen objects by identity: the directory caches' subjects and facts are
 * deep-frozen and shared by every record of their caller, so each is serialized once, not per
 * record (it was most of a record's serialization).
 */
const frozenText = new WeakMap<object, string>();

/**
 * The canonical form every hash is computed over: exactly the text PostgreSQL writes for the
 * value as jsonb (`to_jsonb(value)::text`): keys in jsonbKeyOrder, `", "` and `": "` between
 * members, numbers in plain decimal, JSON.stringify's string escapes (which are jsonb's).
 * Values follow JSON.stringify's rules (toJSON, undefined members dropped, non-finite numbers
 * as null). So the database can render a stored record itself, and anyone can re-check a hash
 * with SQL alone.
 */
export function canonicalJson(value: unknown): string {
  const text = write(value, false) ?? 'null';
  return needsCleaning(text) ? (write(value, true) ?? 'null') : text;
}

/** A finite number as PostgreSQL's numeric prints it: JavaScript's digits, never an exponent. */
function decimal(value: number): string {
  const text = JSON.stringify(value);
  const exponent = text.indexOf('e');
  if (exponent === -1) return text;
  const sign = text.startsWith('-') ? '-' : '';
  const mantissa = text.slice(sign.length, exponent);
  const point = mantissa.indexOf('.');
  const digits = mantissa.replace('.', '');
  const position = (point === -1 ? mantissa.length : point) + Number(text.slice(exponent + 1));
  if (position <= 0) return `${sign}0.${'0'.repeat(-position)}${digits}`;
  if (position >= digits.length) return `${sign}${digits}${'0'.repeat(position - digits.length)}`;
  return `${sign}${digits.slice(0, position)}.${digits.slice(position)}`;
}

/** Objects built in canonical order (the policy input, a route's resource) need no sort. */
function inOrder(keys: readonly string[]): boolean {
  for (let i = 1; i < keys.length; i++) if (jsonbKeyOrder(keys[i - 1]!, keys[i]!) > 0) return false;
  return true;
}

function write(value: unknown, clean: boolean): string | undefined {
  switch (typeof value) {
    case 'string':
      return JSON.stringify(clean ? storable(value) : value);
    case 'number':
      return Number.isFinite(value) ? decimal(value) : 'null';
    case 'boolean':
      return value ? 'true' : 'false';
    case 'bigint':
      return value.toString();
    case 'object': {
      if (value === null) return 'null';
      if (clean || !Object.isFrozen(value)) return writeObject(value, clean);
      let text = frozenText.get(value);
      if (text === undefined) {
        text = writeObject(value, clean);
        if (text !== undefined) frozenText.set(value, text);
      }
      return text;
    }
    default:
      return undefined;
  }
}

function writeObject(value: object, clean: boolean): string | undefined {
  const withJson = value as { toJSON?: () => unknown };
  if (typeof withJson.toJSON === 'function') return write(withJson.toJSON(), clean);
  if (Array.isArray(value)) {
    let out = '[';
    for (let i = 0; i < value.length; i++) out += (i === 0 ? '' : ', ') + (write(value[i], clean) ?? 'null');
    return `${out}]`;
  }
  const object = value as Record<string, unknown>;
  const keys = Object.keys(object);
  if (clean) return writeCleanObject(object, keys);
  if (!inOrder(keys)) keys.sort(jsonbKeyOrder);
  let out = '{';
  for (const key of keys) {
    const item = write(object[key], false);
    if (item === undefined) continue;
    if (out.length > 1) out += ', ';
    out += memberPrefix(key) + item;
  }
  return out + '}';
}

/**
 * `"key": ` by key. Inputs use a small vocabulary of keys (the policy input's, a subject's,
 * facts'), so each is quoted once rather than once per record; bounded, as some keys come from data.
 */
const prefixes = new Map<string, string>();
const MAX_PREFIXES = 1024;

function memberPrefix(key: string): string {
  let prefix = prefixes.get(key);
  if (prefix === undefined) {
    if (prefixes.size >= MAX_PREFIXES) prefixes.clear();
    prefix = `${JSON.stringify(key)}: `;
    prefixes.set(key, prefix);
  }
  return prefix;
}

/**
 * The rare second pass: keys are ordered as they will be stored, after replacing what PostgreSQL
 * cannot hold. Keys that become one (`a\u0000` and `a\ud800` are both `a\ufffd`) are one member,
 * the last written, as jsonb keeps the last of duplicate keys: the text hashed is the text stored.
 */
function writeCleanObject(object: Record<string, unknown>, keys: readonly string[]): string {
  const members: [key: string, item: string][] = [];
  for (const key of keys) {
    const item = write(object[key], true);
    if (item !== undefined) members.push([storable(key), item]);
  }
  // Stable: keys that became one keep their order, and the last of them stays.
  members.sort((a, b) => jsonbKeyOrder(a[0], b[0]));
  let out = '{';
  for (let i = 0; i < members.length; i++) {
    const [key, item] = members[i]!;
    if (i + 1 < members.length && members[i + 1]![0] === key) continue;
    out += `${out.length > 1 ? ', ' : ''}${JSON.stringify(key)}: ${item}`;
  }
  return `${out}}`;
}
