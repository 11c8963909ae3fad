// A DecisionRecorder decorator so no one without an account grows the decision log at line
// rate: 401s are recorded up to audit.unauthenticated_per_minute per client and minute; the
// rest are counted into one summary record per client and minute, so nothing vanishes silently.
import { LRUCache } from 'lru-cache';
import type { DecisionRecord, DecisionRecorder } from '../decision-record';
import { timeOrderedId } from '../../base/time-ordered-id';

export interface SuppressionOptions {
  perMinute: number;
  /** Client addresses tracked at once; one pushed out has its summary written first. Default 10,000. */
  maxClients?: number;
  /** Milliseconds since the epoch; default Date.now. */
  now?: (() => number) | undefined;
  /** How often closed minutes are summarized. Default 1 s. */
  sweepIntervalMs?: number;
}

/** The action of a summary record. */
export const SUPPRESSED_ACTION = 'audit:suppressed';

const MINUTE_MS = 60_000;
const UNKNOWN_CLIENT = 'unknown';

interface ClientMinute {
  /** Start of the minute counted, in ms. */
  minute: number;
  recorded: number;
  suppressed: number;
}

export class UnauthenticatedSuppression implements DecisionRecorder {
  private readonly clients: LRUCache<string, ClientMinute>;
  /** Clients with suppressed requests not summarized yet. */
  private readonly pending = new Set<string>();
  private readonly now: () => number;
  private readonly timer: NodeJS.Timeout;
  /** After close nothing is counted any more: a late record goes to the recorder underneath (its spool). */
  private closed = false;

  constructor(
    private readonly inner: DecisionRecorder,
    private readonly options: SuppressionOptions,
  ) {
    this.now = options.now ?? Date.now;
    this.clients = new LRUCache<string, ClientMinute>({
      max: options.maxClients ?? 10_000,
      // Bounded memory never costs a count: an evicted client's suppressions are summarized first.
      dispose: (counts, client, reason) => {
        if (reason === 'evict') this.summarize(client, counts);
      },
    });
    this.timer = setInterval(() => this.sweep(), options.sweepIntervalMs ?? 1_000);
    this.timer.unref();
  }

  record(record: DecisionRecord): void {
    if (this.admit(record)) this.inner.record(record);
  }

  /** A suppressed 401 is done once counted: its summary is what will be stored. */
  recordDurably(record: DecisionRecord): Promise<void> {
    return this.admit(record) ? this.inner.recordDurably(record) : Promise.resolve();
  }

  flush(): Promise<void> {
    return this.inner.flush();
  }

  /** Summarizes every count, the current minute's too, then closes the recorder underneath. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    for (const client of [...this.pending]) {
      const counts = this.clients.peek(client);
      if (counts) this.summarize(client, counts);
    }
    this.pending.clear();
    await this.inner.close();
  }

  /** Writes the summaries of minutes that have ended. */
  sweep(): void {
    const minute = this.minuteNow();
    for (const client of [...this.pending]) {
      const counts = this.clients.peek(client);
      if (!counts) this.pending.delete(client);
      else if (counts.minute < minute) this.summarize(client, counts);
    }
  }

  private admit(record: DecisionRecord): boolean {
    if (record.status !== 401 || this.closed) return true;
    const client = clientOf(record.clientAddress);
    const minute = this.minuteNow();
    let counts = this.clients.get(client);
    if (!counts) {
      counts = { minute, recorded: 0, suppressed: 0 };
      this.clients.set(client, counts);
    } else if (counts.minute !== minute) {
      this.summarize(client, counts);
      Object.assign(counts, { minute, recorded: 0, suppressed: 0 });
    }
    if (counts.recorded < this.options.perMinute) {
      counts.recorded += 1;
      return true;
    }
    counts.suppressed += 1;
    this.pending.add(client);
    return false;
  }

  private summarize(client: string, counts: ClientMinute): void {
    this.pending.delete(client);
    if (counts.suppressed === 0) return;
    const suppressed = counts.suppressed;
    counts.suppressed = 0;
    const id = timeOrderedId();
    this.inner.record({
      id,
      time: new Date(this.now()),
      requestId: id,
      subject: null,
      userId: null,
      organization: null,
      action: SUPPRESSED_ACTION,
      resource: { type: 'client', address: client },
      method: '-',
      path: '-',
      allow: false,
      status: 401,
      reasons: [
        `${suppressed} unauthenticated request${suppressed === 1 ? '' : 's'} from ${client} suppressed in the minute starting ${new Date(counts.minute).toISOString()}`,
      ],
      code: 'suppressed',
      codeParams: { count: suppressed, client },
      policyRevision: null,
      evalLatencyUs: null,
      input: null,
      dryRun: false,
      clientAddress: client,
    });
  }

  private minuteNow(): number {
    return Math.floor(this.now() / MINUTE_MS) * MINUTE_MS;
  }
}

/**
 * Who is counted: an IPv4 address (also when IPv4-mapped), or the /64 of an IPv6 address,
 * since one IPv6 host commonly holds a whole /64 and would otherwise get a fresh limit per address.
 */
export function clientOf(address: string | null | undefined): string {
  if (!address) return UNKNOWN_CLIENT;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1]!;
  if (!address.includes(':')) return address;
  const [head = '', tail] = address.split('%')[0]!.toLowerCase().split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = tail === undefined ? left : [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right];
  return `${groups
    .slice(0, 4)
    .map((group) => group.replace(/^0+(?=.)/, ''))
    .join(':')}::/64`;
}
