// Keeps the directory caches fresh without polling: one dedicated PostgreSQL connection
// (not from the Knex pool, which would recycle it) LISTENs on the channel the directory
// triggers notify, and each notification evicts exactly what it names. Fail safe: while
// the connection is down nothing is cached or served from cache (every request reads
// PostgreSQL), since a change made meanwhile would go unnoticed; on reconnect the caches
// start empty. A heartbeat bounds how long a silently dead connection goes unnoticed.
import pg from 'pg';
import type { Logger } from 'pino';
import { parseDirectoryChange, type CacheFreshness, type DirectoryCache } from './directory-cache';

/** The channel the triggers of migrations/20261128000020_directory_notify.js notify. */
export const DIRECTORY_CHANNEL = 'portcullis_directory';

/** The listener's session name in pg_stat_activity. */
export const LISTENER_APPLICATION_NAME = 'portcullis-directory-listener';

export interface ChangeListenerOptions {
  url: string;
  logger: Pick<Logger, 'info' | 'warn' | 'error'>;
  /** How often the connection is checked with a round trip; default 2 s. */
  heartbeatMs?: number;
  /** A heartbeat or connect not answered within this is a dead connection; default 2 s. */
  timeoutMs?: number;
  /** First reconnect delay, doubled up to maxBackoffMs; defaults 100 ms and 5 s. */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
}

export interface ChangeListenerStats {
  live: boolean;
  notifications: number;
  reconnects: number;
}

export class DirectoryChangeListener implements CacheFreshness {
  private readonly caches: DirectoryCache[] = [];
  private client: pg.Client | undefined;
  private connected = false;
  private closed = false;
  private failures = 0;
  private notifications = 0;
  private reconnects = 0;
  private heartbeat: NodeJS.Timeout | undefined;
  private retry: NodeJS.Timeout | undefined;
  private firstAttempt: Promise<void> | undefined;
  /** The newest sync() round trip, until it resolves. */
  private latest: Promise<void> | undefined;
  /** A sync() round trip queued behind the one before it, not sent yet. */
  private unsent: Promise<void> | undefined;
  private readonly heartbeatMs: number;
  private readonly timeoutMs: number;
  private readonly initialBackoffMs: number;
  private readonly maxBackoffMs: number;

  constructor(private readonly options: ChangeListenerOptions) {
    this.heartbeatMs = options.heartbeatMs ?? 2_000;
    this.timeoutMs = options.timeoutMs ?? 2_000;
    this.initialBackoffMs = options.initialBackoffMs ?? 100;
    this.maxBackoffMs = options.maxBackoffMs ?? 5_000;
  }

  /** True while changes are being heard: only then may caches serve. */
  get live(): boolean {
    return this.connected;
  }

  subscribe(cache: DirectoryCache): void {
    this.caches.push(cache);
  }

  /** Connects and LISTENs; resolves after the first attempt, successful or not (it keeps retrying). */
  start(): Promise<void> {
    this.firstAttempt ??= this.connect();
    return this.firstAttempt;
  }

  stats(): ChangeListenerStats {
    return { live: this.connected, notifications: this.notifications, reconnects: this.reconnects };
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retry);
    clearInterval(this.heartbeat);
    this.connected = false;
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => undefined);
  }

  private async connect(): Promise<void> {
    if (this.closed) return;
    const client = new pg.Client({
      connectionString: this.options.url,
      application_name: LISTENER_APPLICATION_NAME,
      connectionTimeoutMillis: this.timeoutMs,
      keepAlive: true,
    });
    this.client = client;
    client.on('notification', (message) => {
      if (message.channel === DIRECTORY_CHANNEL && this.client === client) this.changed(message.payload ?? '');
    });
    client.on('error', (error) => this.dropped(client, error));
    client.on('end', () => this.dropped(client, new Error('the connection ended')));
    try {
      await client.connect();
      await client.query(`LISTEN ${DIRECTORY_CHANNEL}`);
    } catch (error) {
      this.dropped(client, error);
      return;
    }
    if (this.client !== client) return;
    // Changes before LISTEN took effect were not heard: start from empty caches.
    this.clearCaches();
    this.connected = true;
    if (this.failures > 0) {
      this.reconnects += 1;
      this.options.logger.info({ component: 'directory-listener' }, 'listening for directory changes again; caches start empty');
    }
    this.failures = 0;
    clearInterval(this.heartbeat);
    this.heartbeat = setInterval(() => this.beat(client), this.heartbeatMs);
    this.heartbeat.unref();
  }

  private changed(payload: string): void {
    this.notifications += 1;
    const change = parseDirectoryChange(payload);
    for (const cache of this.caches) cache.evict(change);
  }

  private beat(client: pg.Client): void {
    void this.roundTrip(client, 'heartbeat');
  }

  /**
   * Resolves once every directory change committed before the call has reached the caches:
   * PostgreSQL sends a listening session the notifications committed before its next statement
   * ends ahead of that statement's answer, so one round trip on this connection is enough. The
   * gateway calls it after a write it forwarded was answered, and holds the requests that come
   * next until it resolves (read your writes, without emptying the caches). At once while not
   * listening (the caches serve nothing then). A round trip that fails or takes over timeoutMs
   * drops the connection, as a failed heartbeat does: the caches are emptied and off until it is
   * back, so what waits is then read from PostgreSQL.
   */
  sync(): Promise<void> {
    const client = this.client;
    if (!client || !this.connected) return Promise.resolve();
    // A round trip not sent yet is sent after this call, so it covers it too.
    if (this.unsent) return this.unsent;
    const after = this.latest ?? Promise.resolve();
    const sync: Promise<void> = after.then(() => {
      if (this.unsent === sync) this.unsent = undefined;
      return this.client === client && this.connected ? this.roundTrip(client, 'catch-up') : undefined;
    });
    this.unsent = sync;
    this.latest = sync;
    void sync.then(() => {
      if (this.latest === sync) this.latest = undefined;
    });
    return sync;
  }

  /** The newest sync() still running, if any: what a request read now must wait for. */
  get catchingUp(): Promise<void> | undefined {
    return this.latest;
  }

  /** One `select 1` on the connection; a failure or no answer within timeoutMs drops it. Never rejects. */
  private roundTrip(client: pg.Client, what: string): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no ${what} answer within ${this.timeoutMs} ms`)), this.timeoutMs);
    });
    return Promise.race([client.query('select 1'), timeout])
      .then(
        () => undefined,
        (error: unknown) => this.dropped(client, error),
      )
      .finally(() => clearTimeout(timer));
  }

  /** The connection is gone (or never came): stop serving from cache, empty it, reconnect with backoff. */
  private dropped(client: pg.Client, error: unknown): void {
    if (this.client !== client) return;
    this.client = undefined;
    const wasLive = this.connected;
    this.connected = false;
    clearInterval(this.heartbeat);
    this.clearCaches();
    client.removeAllListeners('notification');
    client.on('error', () => undefined);
    client.end().catch(() => undefined);
    if (this.closed) return;
    this.failures += 1;
    const delay = Math.min(this.maxBackoffMs, this.initialBackoffMs * 2 ** (this.failures - 1));
    const log = { component: 'directory-listener', err: error, retryInMs: delay };
    if (wasLive) this.options.logger.error(log, 'lost the directory change connection: caches are off until it is back');
    else this.options.logger.warn(log, 'cannot listen for directory changes yet: caches stay off');
    this.retry = setTimeout(() => void this.connect(), delay * (0.75 + Math.random() / 2));
    this.retry.unref();
  }

  /** Empties every subscribed cache (on a reconnect, and when the connection is lost). */
  private clearCaches(): void {
    for (const cache of this.caches) cache.clear();
  }
}
