// Random bytes drawn from the CSPRNG a block at a time: one call into it per block instead of
// one or two per request (a call costs more than the bytes; BENCHMARKS.md). Each byte is handed
// out once.
import { randomFillSync } from 'node:crypto';

export class RandomPool {
  /** The block; read the bytes `take` hands out from it, and only those. */
  readonly bytes: Buffer;
  private offset: number;

  constructor(blockBytes: number) {
    this.bytes = Buffer.allocUnsafe(blockBytes);
    this.offset = blockBytes;
  }

  /** Where `count` fresh random bytes start in `bytes` (refilled when the block is used up). */
  take(count: number): number {
    if (this.offset + count > this.bytes.length) {
      randomFillSync(this.bytes);
      this.offset = 0;
    }
    const at = this.offset;
    this.offset += count;
    return at;
  }
}
