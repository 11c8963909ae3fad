// How far a reader of the decision log may follow it in seq order without skipping a record that
// commits late. Instances draw seq from one sequence but commit in any order, so seq N+1 can be
// visible while N is still in flight. Every append holds its chain's lock from before it draws a
// seq until it ends, so once every append that held a chain lock when the sequence stood at M
// has ended, each seq up to M is either visible or never will be: M is then settled. Only
// appends are waited for: a long transaction elsewhere on the server (a dump, a report) is not.
export interface HorizonReader {
  /** The newest seq drawn. */
  seqMark(): Promise<number>;
  /** Read after seqMark: the appends running now (ids of the transactions holding a chain's lock). */
  appendsInFlight(): Promise<string[]>;
}

export class CommittedHorizon {
  /** Marks not settled yet, oldest first, with the appends each still waits for. */
  private readonly pending: { mark: number; waitingOn: Set<string> }[] = [];
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
    const inFlight = new Set(await this.reader.appendsInFlight());
    for (const { waitingOn } of this.pending) for (const append of waitingOn) if (!inFlight.has(append)) waitingOn.delete(append);
    this.pending.push({ mark, waitingOn: inFlight });
    while (this.pending.length > 0 && this.pending[0]!.waitingOn.size === 0)
      this.settled = Math.max(this.settled, this.pending.shift()!.mark);
    return this.settled;
  }
}
