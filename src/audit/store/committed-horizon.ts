// How far a reader of the decision log may follow it in seq order without skipping a record that
// commits late. Instances draw seq from one sequence but commit in any order, so seq N+1 can be
// visible while N is still in flight. Every append takes its transaction id before drawing a
// seq, so once every transaction that was running when the sequence stood at M has ended, each
// seq up to M is either visible or never will be: M is then settled.
export interface HorizonReader {
  /** The newest seq drawn. */
  seqMark(): Promise<number>;
  /** Read after seqMark: transactions below `xmin` have ended; every id assigned so far is below `xmax`. */
  snapshotBounds(): Promise<{ xmin: bigint; xmax: bigint }>;
}

export class CommittedHorizon {
  /** Marks not settled yet, oldest first, with the xmax that must be behind every running transaction. */
  private readonly pending: { mark: number; xmax: bigint }[] = [];
  private settled = 0;

  constructor(private readonly reader: HorizonReader) {}

  /** Where a reader starts: waits (briefly: appends are short) until the seq drawn now is settled. */
  async start(pollMs = 20): Promise<number> {
    let settled = await this.advance();
    const target = this.pending.at(-1)?.mark ?? settled;
    while (settled < target) {
      await new Promise((resolve) => setTimeout(resolve, pollMs));
      settled = await this.advance();
    }
    return settled;
  }

  /** The highest seq up to which the log is final; it only grows. One call per poll. */
  async advance(): Promise<number> {
    const mark = await this.reader.seqMark();
    const { xmin, xmax } = await this.reader.snapshotBounds();
    this.pending.push({ mark, xmax });
    while (this.pending.length > 0 && this.pending[0]!.xmax <= xmin) this.settled = Math.max(this.settled, this.pending.shift()!.mark);
    return this.settled;
  }
}
