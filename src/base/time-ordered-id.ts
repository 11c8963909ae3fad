// The ids Portcullis mints for what it stores: decision ids, the request ids it makes up, and
// shadow-policy disagreements. UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then 74 random
// bits (a counter within one millisecond, so one process's ids also sort in the order made).
// The decision log indexes its ids (`decisions`' key, `decision_ids`, the request id index):
// with random (v4) ids every record lands on a random leaf page of each, which after each
// checkpoint costs a full page image in the WAL; time-ordered ids are added at the right edge.
// Nothing reads the time back out of an id: the record's `time` is the record's time.
import { v7 } from 'uuid';

/** A new UUIDv7, lower case. */
export function timeOrderedId(): string {
  return v7();
}
