// `audit.mask`: JSON Pointers (RFC 6901) into the policy input whose values are erased before
// a decision is hashed, stored or exported. Pointers under /resource also erase from the
// record's resource. A `*` segment matches every member of an object or array.
import { ConfigError } from '../../base/errors';
import type { DecisionRecord } from '../decision-record';

export class DecisionMask {
  private readonly pointers: readonly string[][];

  constructor(pointers: readonly string[]) {
    this.pointers = pointers.map(parsePointer);
  }

  get empty(): boolean {
    return this.pointers.length === 0;
  }

  /**
   * A copy of the record with the masked values removed; the record itself, and anything it
   * shares with other requests (a cached subject), is never modified.
   */
  apply(record: DecisionRecord): DecisionRecord {
    if (this.pointers.length === 0) return record;
    let input = record.input;
    let resource: unknown = record.resource;
    for (const segments of this.pointers) {
      input = erase(input, segments, 0);
      if (segments[0] === 'resource') resource = segments.length === 1 ? {} : erase(resource, segments, 1);
    }
    if (input === record.input && resource === record.resource) return record;
    return { ...record, input, resource: resource as DecisionRecord['resource'] };
  }

  /** A policy input with the masked values removed (for rows that keep only the input, like shadow disagreements). */
  applyToInput(input: unknown): unknown {
    return this.pointers.reduce((value, segments) => erase(value, segments, 0), input);
  }
}

/** `/a/b~1c` -> ['a', 'b/c']. The empty pointer (the whole input) is refused: mask fields, not everything. */
export function parsePointer(pointer: string): string[] {
  if (!pointer.startsWith('/') || pointer === '/') {
    throw new ConfigError(`audit.mask: "${pointer}" is not a JSON pointer to a field (it must start with / and name a member)`);
  }
  return pointer
    .slice(1)
    .split('/')
    .map((segment) => segment.replace(/~1/g, '/').replace(/~0/g, '~'));
}

/** Returns `value` itself when nothing matched, else a copy of the path down to the erased members. */
function erase(value: unknown, segments: readonly string[], depth: number): unknown {
  if (value === null || typeof value !== 'object') return value;
  const segment = segments[depth]!;
  const last = depth === segments.length - 1;
  if (Array.isArray(value)) {
    const indexes = segment === '*' ? value.map((_, i) => i) : /^(0|[1-9]\d*)$/.test(segment) ? [Number(segment)] : [];
    let copy: unknown[] | undefined;
    for (const index of indexes) {
      if (index >= value.length) continue;
      // An array keeps its length: an erased element becomes null.
      const next = last ? null : erase(value[index], segments, depth + 1);
      if (next === value[index]) continue;
      copy ??= [...(value as unknown[])];
      copy[index] = next;
    }
    return copy ?? value;
  }
  const object = value as Record<string, unknown>;
  const keys = segment === '*' ? Object.keys(object) : Object.hasOwn(object, segment) ? [segment] : [];
  let copy: Record<string, unknown> | undefined;
  for (const key of keys) {
    if (last) {
      copy ??= { ...object };
      delete copy[key];
      continue;
    }
    const next = erase(object[key], segments, depth + 1);
    if (next === object[key]) continue;
    copy ??= { ...object };
    copy[key] = next;
  }
  return copy ?? value;
}
