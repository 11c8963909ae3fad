// Where a request's policy evaluation runs (`policy.evaluation`). A worker thread pays for
// itself only when the event loop has other requests to serve while the policy runs: under
// load it takes ~90 µs of CPU per request off the event loop (+24 % req/s, BENCHMARKS.md), but
// a request that comes alone waits for an idle thread to wake and then to wake the event loop,
// ~0.25 ms here, far more than the evaluation itself. `auto` therefore evaluates inline while
// requests come one at a time and in the thread once they overlap, judged by how many are in
// flight as each arrives (averaged), with a band between the two so that the choice does not
// flap: mixing the two at one load costs more than either (the thread sleeps and wakes more).

import type { PortcullisConfig } from '../config/config-schema';

export type EvaluationMode = PortcullisConfig['policy']['evaluation'];

/** `auto`'s band, in requests in flight (averaged over arrivals). */
export const TO_THREAD_ABOVE = 6;
export const TO_INLINE_BELOW = 3;
/** Each arrival's weight in the average: about the last 20 arrivals count. */
const WEIGHT = 0.05;

export class EvaluationPlacement {
  /** Requests in flight as they arrived, a moving average. */
  private concurrency = 0;
  private threaded: boolean;
  private readonly counts = { thread: 0, inline: 0 };

  constructor(private readonly mode: EvaluationMode) {
    this.threaded = mode === 'thread';
  }

  /**
   * Told, as each request comes to its policy evaluation, how many are in flight in the gateway
   * (itself included); answers whether it is evaluated in the policy thread (true) or inline.
   */
  arrive(inFlight: number): boolean {
    if (this.mode === 'auto') {
      this.concurrency += (inFlight - this.concurrency) * WEIGHT;
      if (this.threaded && this.concurrency < TO_INLINE_BELOW) this.threaded = false;
      else if (!this.threaded && this.concurrency > TO_THREAD_ABOVE) this.threaded = true;
    }
    this.counts[this.threaded ? 'thread' : 'inline'] += 1;
    return this.threaded;
  }

  /** Requests placed in the thread and inline so far (the metrics read them). */
  placed(): { thread: number; inline: number } {
    return { ...this.counts };
  }
}
