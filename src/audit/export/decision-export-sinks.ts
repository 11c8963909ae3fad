// Where exported decision events go (`audit.export.kind`): NDJSON on stdout or appended to a
// file, or gzip'd JSON arrays POSTed like OPA's `decision_logs` service does.
import { appendFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import type { OpaDecisionEvent } from './opa-decision-event';

const gzipAsync = promisify(gzip);

export interface EventSink {
  /** Resolves once the events are accepted; rejects to have the same events retried. */
  send(events: readonly OpaDecisionEvent[]): Promise<void>;
}

const ndjson = (events: readonly OpaDecisionEvent[]) => events.map((event) => `${JSON.stringify(event)}\n`).join('');

export class StreamSink implements EventSink {
  constructor(private readonly stream: Writable) {}

  send(events: readonly OpaDecisionEvent[]): Promise<void> {
    return new Promise((resolve, reject) => {
      this.stream.write(ndjson(events), (error) => (error ? reject(error) : resolve()));
    });
  }
}

export class FileSink implements EventSink {
  private ready: Promise<unknown> | undefined;

  constructor(private readonly file: string) {}

  async send(events: readonly OpaDecisionEvent[]): Promise<void> {
    this.ready ??= mkdir(path.dirname(this.file), { recursive: true });
    await this.ready;
    await appendFile(this.file, ndjson(events));
  }
}

export interface HttpSinkOptions {
  url: string;
  /** e.g. an Authorization header for the collector. */
  headers: Readonly<Record<string, string>>;
  timeoutMs: number;
}

export class HttpSink implements EventSink {
  constructor(private readonly options: HttpSinkOptions) {}

  async send(events: readonly OpaDecisionEvent[]): Promise<void> {
    const body = await gzipAsync(Buffer.from(JSON.stringify(events), 'utf8'));
    let response: Response;
    try {
      response = await fetch(this.options.url, {
        method: 'POST',
        headers: { ...this.options.headers, 'content-type': 'application/json', 'content-encoding': 'gzip' },
        body,
        signal: AbortSignal.timeout(this.options.timeoutMs),
      });
    } catch (error) {
      const cause = (error as Error).cause instanceof Error ? ((error as Error).cause as Error).message : (error as Error).message;
      throw new Error(`the decision log collector ${this.options.url} is unreachable: ${cause}`, { cause: error });
    }
    await response.body?.cancel();
    if (!response.ok) throw new Error(`the decision log collector ${this.options.url} answered ${response.status}`);
  }
}
