// The audit stage as the composition root uses it: the batching recorder over the hash-chained
// store, its spool, masking, the optional OPA-format export, the partition upkeep, the signed
// checkpoints and the limit on unauthenticated records, built from the `audit` config (and this
// instance's id, which names its chain) and shut down in the right order.
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Writable } from 'node:stream';
import type { Knex } from 'knex';
import type { Logger } from 'pino';
import { projectRoot } from '../project-root';
import type { AuditConfig } from './audit-config';
import { BatchingDecisionRecorder } from './recording/batching-decision-recorder';
import { CheckpointSigner } from './chain/checkpoint-key';
import { DecisionCheckpointer } from './chain/decision-checkpointer';
import { FileSink, HttpSink, StreamSink, type EventSink } from './export/decision-export-sinks';
import { DecisionExporter } from './export/decision-exporter';
import { DecisionMask } from './recording/decision-mask';
import type { DecisionRecorder } from './decision-record';
import { DecisionRetention } from './store/decision-retention';
import { DecisionSpool } from './recording/decision-spool';
import { resolveInstanceId } from './chain/instance-id';
import { PgDecisionCheckpointStore } from './chain/pg-decision-checkpoint-store';
import { PgDecisionStore } from './chain/pg-decision-store';
import { UnauthenticatedSuppression } from './recording/unauthenticated-suppression';

export interface AuditTrailOptions {
  db: Knex;
  config: AuditConfig;
  /** The spool (with `audit.spool: local`) defaults to `<stateDir>/spool`. */
  stateDir: string;
  /** The policy entrypoint, reported as the exported events' `path`. */
  entrypoint: string;
  logger: Logger;
  /** Where `export.kind: stdout` writes; default process.stdout. */
  stdout?: Writable;
  /** The clock of the per-minute limit on unauthenticated records; default Date.now. */
  now?: (() => number) | undefined;
}

/** The backlog as the admin API shows it. */
export interface AuditBacklog {
  mode: AuditConfig['mode'];
  /** Records not yet in PostgreSQL. */
  backlog: number;
  memory: number;
  spool: number;
  /** null with `audit.spool: none`. */
  spool_file: string | null;
  export?: { kind: string; pending: number; dropped: number };
}

const EXPORT_CLOSE_MS = 3_000;

export class AuditTrail {
  private constructor(
    readonly recorder: BatchingDecisionRecorder,
    /** What the gateway's requests are recorded through: `recorder` with 401s limited per client. */
    readonly requestRecorder: DecisionRecorder,
    private readonly spool: DecisionSpool | undefined,
    private readonly retention: DecisionRetention,
    private readonly checkpointer: DecisionCheckpointer,
    private readonly exporter: DecisionExporter | undefined,
    private readonly config: AuditConfig,
  ) {}

  get strict(): boolean {
    return this.config.mode === 'strict';
  }

  static async start(options: AuditTrailOptions): Promise<AuditTrail> {
    const { config, logger } = options;
    // First: a bad key file stops the start before anything is opened.
    const { signer, generated } = await CheckpointSigner.open(config.checkpoint_key_file, options.stateDir);
    if (generated) {
      logger.warn(
        { privateKeyFile: generated.privateKeyFile, publicKeyFile: generated.publicKeyFile },
        'audit.checkpoint_key_file is not set: decision log checkpoints are signed with a key generated in the state folder; give every instance one shared key, kept outside the database',
      );
    }
    const instance = await resolveInstanceId(config.instance_id, options.stateDir);
    logger.info(
      { instanceId: instance.id, ...(instance.file ? { instanceIdFile: instance.file } : {}) },
      "decision records are appended to this instance's own chain",
    );
    const mask = new DecisionMask(config.mask);
    const spool = config.spool === 'local' ? await DecisionSpool.open(config.spool_dir ?? path.join(options.stateDir, 'spool')) : undefined;
    if (!spool) {
      logger.info(
        `audit.spool is "none": decision records PostgreSQL cannot take are ${config.mode === 'strict' ? 'refused with their requests (503)' : 'kept in memory until it is back'}`,
      );
    } else if (spool.pending > 0)
      logger.warn({ spool: spool.file, records: spool.pending }, 'writing decision records an earlier run spooled');
    const exporter = config.export
      ? new DecisionExporter(sinkFor(config.export, options.stdout ?? process.stdout), {
          batchSize: config.export.batch_size,
          flushIntervalMs: config.export.flush_interval_ms,
          bufferSize: config.export.buffer_size,
          path: options.entrypoint,
          labels: { id: randomUUID(), app: 'portcullis', version: version(), ...config.export.labels },
          onError: (error) => logger.warn({ err: error }, 'decision export failed'),
        })
      : undefined;
    const recorder = new BatchingDecisionRecorder(new PgDecisionStore(options.db, instance.id), {
      ...(spool ? { spool } : {}),
      mask,
      ...(exporter ? { onDurable: (records) => exporter.enqueue(records) } : {}),
      onError: (error) => logger.error({ err: error }, 'decision records could not be written to PostgreSQL yet'),
    });
    const checkpointer = new DecisionCheckpointer(new PgDecisionCheckpointStore(options.db), signer, {
      chain: instance.id,
      intervalMs: config.checkpoint_interval_s * 1000,
      onError: (error) => logger.error({ err: error }, 'decision log checkpoint failed'),
    });
    const retention = new DecisionRetention(options.db, {
      retentionDays: config.retention_days,
      signer,
      onError: (error) => logger.error({ err: error }, 'decision log partition upkeep failed'),
      onRun: ({ created, dropped }) => {
        if (created.length > 0 || dropped.length > 0) logger.info({ created, dropped }, 'decision log partitions maintained');
      },
    });
    await retention.start();
    checkpointer.start();
    const requestRecorder = new UnauthenticatedSuppression(recorder, { perMinute: config.unauthenticated_per_minute, now: options.now });
    return new AuditTrail(recorder, requestRecorder, spool, retention, checkpointer, exporter, config);
  }

  get backlog(): AuditBacklog {
    return {
      mode: this.config.mode,
      backlog: this.recorder.backlog,
      memory: this.recorder.memoryBacklog,
      spool: this.recorder.spoolBacklog,
      spool_file: this.spool?.file ?? null,
      ...(this.exporter && this.config.export
        ? { export: { kind: this.config.export.kind, pending: this.exporter.pending, dropped: this.exporter.dropped } }
        : {}),
    };
  }

  /** Everything recorded becomes durable (PostgreSQL or the spool, or only PostgreSQL without one); then the export gets a last chance. */
  async close(): Promise<void> {
    await this.retention.stop();
    await this.checkpointer.stop();
    // Writes the pending suppression summaries, then closes `recorder`.
    await this.requestRecorder.close();
    await this.exporter?.close(EXPORT_CLOSE_MS);
    await this.spool?.close();
  }
}

function sinkFor(config: NonNullable<AuditConfig['export']>, stdout: Writable): EventSink {
  switch (config.kind) {
    case 'stdout':
      return new StreamSink(stdout);
    case 'file':
      return new FileSink(config.path);
    case 'http':
      return new HttpSink({ url: config.url, headers: config.headers, timeoutMs: config.timeout_ms });
  }
}

function version(): string {
  try {
    return (JSON.parse(readFileSync(path.join(projectRoot, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}
