// The built-ins a compiled policy needs from its host. OPA's WebAssembly target evaluates most
// built-ins itself and imports the rest by name; opa-wasm implements a few of those in
// JavaScript, this module provides the time built-ins (time.now_ns is the request's time, read
// from the input, so replaying a recorded input decides the same), and a policy that imports
// any other is refused when it is built, tested or loaded instead of failing on every request.
import { PolicyError } from '../base/errors';

/** Built-ins opa-wasm 1.10 implements in JavaScript (its src/builtins; a unit test keeps this in step). */
export const JS_RUNTIME_BUILTINS: readonly string[] = [
  'json.is_valid',
  'regex.split',
  'sprintf',
  'yaml.is_valid',
  'yaml.marshal',
  'yaml.unmarshal',
];

/** What time.now_ns() answers during one evaluation: the evaluating input's request.time_ns. */
export type RequestClock = () => number | undefined;

type Builtin = (...args: unknown[]) => unknown;

const WEEKDAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
const NS_PER_MS = 1_000_000;

/**
 * The host's built-ins, named as OPA names them. Times are nanoseconds since the epoch, worked
 * on to the millisecond; a time argument may be `[ns, "Europe/Paris"]` as in OPA ("UTC" or ""
 * is UTC, "Local" the gateway's zone). An error thrown here fails the evaluation (a 500 deny).
 */
export function hostBuiltins(requestTime: RequestClock): Record<string, Builtin> {
  return {
    'time.now_ns': () => {
      const ns = requestTime();
      if (ns === undefined) throw new Error('time.now_ns: the input has no request.time_ns');
      return nanoseconds(ns);
    },
    'time.weekday': (x) => WEEKDAYS[fieldsOf(x, 'time.weekday').weekday],
    'time.date': (x) => {
      const { year, month, day } = fieldsOf(x, 'time.date');
      return [year, month, day];
    },
    'time.clock': (x) => {
      const { hour, minute, second } = fieldsOf(x, 'time.clock');
      return [hour, minute, second];
    },
    'time.add_date': (ns, years, months, days) => {
      const at = new Date(millisecondsOf(ns, 'time.add_date'));
      // Date, like Go's AddDate, normalizes overflow: one month after October 31 is December 1.
      at.setUTCFullYear(
        at.getUTCFullYear() + integer(years, 'time.add_date'),
        at.getUTCMonth() + integer(months, 'time.add_date'),
        at.getUTCDate() + integer(days, 'time.add_date'),
      );
      return nanoseconds(at.getTime() * NS_PER_MS);
    },
    'time.parse_rfc3339_ns': (value) => {
      if (typeof value !== 'string' || !RFC3339.test(value))
        throw new Error(`time.parse_rfc3339_ns: ${JSON.stringify(value)} is not an RFC 3339 time`);
      const ms = Date.parse(value);
      if (Number.isNaN(ms)) throw new Error(`time.parse_rfc3339_ns: ${JSON.stringify(value)} is not an RFC 3339 time`);
      return nanoseconds(ms * NS_PER_MS);
    },
  };
}

const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

/** The built-ins a policy's host must provide: the module's imports, by name. */
export function importedBuiltins(instance: { readonly exports: Record<string, unknown> }, memory: WebAssembly.Memory): string[] {
  const exports = instance.exports as unknown as { builtins: () => number; opa_json_dump: (addr: number) => number };
  const start = exports.opa_json_dump(exports.builtins());
  const bytes = new Uint8Array(memory.buffer);
  let end = start;
  while (bytes[end] !== 0) end += 1;
  return Object.keys(JSON.parse(Buffer.from(bytes.subarray(start, end)).toString('utf8')) as object).sort();
}

/** Where a policy uses a built-in the runtime lacks; the place is known when the Rego sources are. */
export interface BuiltinUse {
  builtin: string;
  file?: string;
  line?: number;
}

/** A policy imports built-ins that neither the WebAssembly runtime nor the host can evaluate. */
export class UnsupportedBuiltinError extends PolicyError {
  constructor(readonly uses: BuiltinUse[]) {
    const names = [...new Set(uses.map((use) => use.builtin))];
    const where = (name: string) => {
      const places = uses.filter((use) => use.builtin === name && use.file).map((use) => `${use.file}:${use.line}`);
      return places.length > 0 ? ` (${places.join(', ')})` : '';
    };
    super(
      `the policy uses ${names.length === 1 ? 'built-in' : 'built-ins'} ${names.map((name) => `${name}${where(name)}`).join(', ')}, ` +
        'which the WebAssembly runtime cannot evaluate; the gateway gives a policy no I/O: put what it needs into the input or data',
    );
    this.name = 'UnsupportedBuiltinError';
  }
}

/**
 * Throws UnsupportedBuiltinError when `imported` names a built-in nobody provides. `sources`
 * (Rego files by path) locate its uses: a wasm bundle keeps no Rego, only the source folder does.
 */
export function checkBuiltins(imported: readonly string[], sources: ReadonlyMap<string, Buffer> = new Map()): void {
  const provided = new Set([...JS_RUNTIME_BUILTINS, ...Object.keys(hostBuiltins(() => undefined))]);
  const missing = imported.filter((name) => !provided.has(name));
  if (missing.length === 0) return;
  throw new UnsupportedBuiltinError(missing.flatMap((name) => usesOf(name, sources)));
}

/** Every line of a .rego source that calls `name`, ignoring comments; the name alone when none is found. */
function usesOf(name: string, sources: ReadonlyMap<string, Buffer>): BuiltinUse[] {
  const call = new RegExp(`(^|[^\\w.])${name.replaceAll('.', '\\.')}\\s*\\(`);
  const uses: BuiltinUse[] = [];
  for (const [file, bytes] of [...sources].sort(([a], [b]) => a.localeCompare(b))) {
    if (!file.endsWith('.rego')) continue;
    bytes
      .toString('utf8')
      .split('\n')
      .forEach((text, index) => {
        if (call.test(withoutComment(text))) uses.push({ builtin: name, file, line: index + 1 });
      });
  }
  return uses.length > 0 ? uses : [{ builtin: name }];
}

/** The line up to a `#` that is not inside a string. */
function withoutComment(line: string): string {
  let quoted: string | undefined;
  for (let i = 0; i < line.length; i += 1) {
    const char = line[i]!;
    if (quoted) {
      if (char === '\\' && quoted === '"') i += 1;
      else if (char === quoted) quoted = undefined;
    } else if (char === '"' || char === '`') quoted = char;
    else if (char === '#') return line.slice(0, i);
  }
  return line;
}

/**
 * A nanosecond count, to the millisecond, as exact JSON: past 2^53 a JavaScript number is not
 * exact, so it is written from a BigInt (opa-wasm takes an ArrayBuffer as JSON text).
 */
function nanoseconds(ns: number): ArrayBuffer {
  const bytes = Buffer.from((BigInt(Math.round(ns / NS_PER_MS)) * BigInt(NS_PER_MS)).toString(), 'utf8');
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
}

function millisecondsOf(ns: unknown, builtin: string): number {
  if (typeof ns !== 'number' || !Number.isFinite(ns)) throw new Error(`${builtin}: ${JSON.stringify(ns)} is not a time in nanoseconds`);
  return Math.floor(ns / NS_PER_MS);
}

function integer(value: unknown, builtin: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value)) throw new Error(`${builtin}: ${JSON.stringify(value)} is not an integer`);
  return value;
}

interface CalendarFields {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number;
  weekday: number;
}

const zones = new Map<string, Intl.DateTimeFormat>();

/** The calendar fields of `x` (ns, or [ns, zone]) in its zone. */
function fieldsOf(x: unknown, builtin: string): CalendarFields {
  const pair: readonly unknown[] | undefined = Array.isArray(x) ? x : undefined;
  const ns: unknown = pair ? pair[0] : x;
  const zone: unknown = pair ? pair[1] : 'UTC';
  if (typeof zone !== 'string') throw new Error(`${builtin}: the time zone ${JSON.stringify(zone)} is not a string`);
  const at = new Date(millisecondsOf(ns, builtin));
  if (zone === '' || zone === 'UTC') {
    return {
      year: at.getUTCFullYear(),
      month: at.getUTCMonth() + 1,
      day: at.getUTCDate(),
      hour: at.getUTCHours(),
      minute: at.getUTCMinutes(),
      second: at.getUTCSeconds(),
      weekday: at.getUTCDay(),
    };
  }
  let format = zones.get(zone);
  if (!format) {
    try {
      format = new Intl.DateTimeFormat('en-US', {
        ...(zone === 'Local' ? {} : { timeZone: zone }),
        hourCycle: 'h23',
        year: 'numeric',
        month: 'numeric',
        day: 'numeric',
        hour: 'numeric',
        minute: 'numeric',
        second: 'numeric',
        weekday: 'long',
      });
    } catch {
      throw new Error(`${builtin}: unknown time zone ${JSON.stringify(zone)}`);
    }
    zones.set(zone, format);
  }
  const parts = Object.fromEntries(format.formatToParts(at).map((part) => [part.type, part.value]));
  return {
    year: Number(parts.year),
    month: Number(parts.month),
    day: Number(parts.day),
    hour: Number(parts.hour),
    minute: Number(parts.minute),
    second: Number(parts.second),
    weekday: WEEKDAYS.indexOf(parts.weekday ?? ''),
  };
}
