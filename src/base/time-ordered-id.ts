// The ids Portcullis mints for what it stores: decision ids, the request ids it makes up, and
// shadow-policy disagreements. UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, a 12-bit
// counter within the millisecond (§6.2, method 1), then 62 random bits, so one process's ids
// sort in the order they were made. The decision log indexes its ids (`decisions`' key,
// `decision_ids`, the request id index): with random (v4) ids every record lands on a random
// leaf page of each, which after each checkpoint costs a full page image in the WAL;
// time-ordered ids are added at the right edge. Nothing reads the time back out of an id.
//
// Not the `uuid` package's v7(): it costs ~550 ns an id, twice a request, and refills its
// random pool every 16 ids. Nor the tail of node's randomUUID(), which this took before: its 36
// characters are joined from 20 pieces (~710 bytes of garbage an id). The random part here is
// 8 bytes of a pool written through a table of byte hex: an id costs ~150 ns and ~350 bytes,
// against ~270 ns and ~710 before (micro-benchmark, 2026-12-01); `Buffer#toString('hex')` was
// slower than either.
import { RandomPool } from './random-pool';

const MAX_COUNTER = 0xfff;
/** The counter's three hex digits, by value. */
const COUNTER_HEX = Array.from({ length: MAX_COUNTER + 1 }, (_, value) => value.toString(16).padStart(3, '0'));

let lastMs = -1;
let counter = 0;
/** `tttttttt-tttt-7` of lastMs: formatting the time is most of an id's cost, so once a millisecond. */
let prefix = '';
/** 8 random bytes an id (62 bits and the variant), for 512 ids a block. */
const pool = new RandomPool(8 * 512);
/** Each byte's two hex digits, by value. */
const BYTE_HEX = Array.from({ length: 256 }, (_, value) => value.toString(16).padStart(2, '0'));

/** A new UUIDv7, lower case, greater than every id this process made before. */
export function timeOrderedId(): string {
  const now = Date.now();
  if (now > lastMs) {
    setTime(now);
  } else if (counter === MAX_COUNTER) {
    // 4,096 ids in one millisecond (the clock standing still or gone back counts as the same
    // millisecond): take the next one (§6.2).
    setTime(lastMs + 1);
  } else {
    counter += 1;
  }
  const at = pool.take(8);
  const b = pool.bytes;
  // The variant (RFC 9562 §4.1): the fourth group starts with the bits 10.
  const variant = BYTE_HEX[(b[at]! & 0x3f) | 0x80]!;
  return (
    `${prefix}${COUNTER_HEX[counter]!}-${variant}${BYTE_HEX[b[at + 1]!]!}-` +
    `${BYTE_HEX[b[at + 2]!]!}${BYTE_HEX[b[at + 3]!]!}${BYTE_HEX[b[at + 4]!]!}${BYTE_HEX[b[at + 5]!]!}${BYTE_HEX[b[at + 6]!]!}${BYTE_HEX[b[at + 7]!]!}`
  );
}

function setTime(ms: number): void {
  lastMs = ms;
  counter = 0;
  // Two 24-bit halves: small integers print in hex four times faster than a 48-bit number does.
  const time = hex6(Math.floor(ms / 0x1000000)) + hex6(ms % 0x1000000);
  prefix = `${time.slice(0, 8)}-${time.slice(8)}-7`;
}

function hex6(value: number): string {
  return value.toString(16).padStart(6, '0');
}
