// W3C Trace Context: a valid incoming `traceparent` is passed to the upstream unchanged;
// a missing or malformed one is replaced by a new trace, so every upstream call has one.
import { randomBytes } from 'node:crypto';

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** Returns the traceparent to forward and its trace id. */
export function traceparentFor(incoming: string | string[] | undefined): { traceparent: string; traceId: string } {
  const match = typeof incoming === 'string' ? TRACEPARENT.exec(incoming.trim()) : null;
  if (match && match[1] !== 'ff' && !/^0+$/.test(match[2]!) && !/^0+$/.test(match[3]!)) {
    return { traceparent: incoming as string, traceId: match[2]! };
  }
  const traceId = randomBytes(16).toString('hex');
  return { traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01`, traceId };
}
