// The `audit` section of portcullis.yaml: how decisions are recorded, kept, masked and
// exported. Part of the one configuration schema (src/config/config-schema.ts).
import { z } from 'zod';
import { CHAIN_NAME, LEGACY_CHAIN } from './chain/decision-chain';

const exportTuning = {
  /** Most events in one write or POST. */
  batch_size: z.number().int().min(1).max(10_000).default(500),
  /** How long an event may wait for its batch. */
  flush_interval_ms: z.number().int().min(10).max(600_000).default(1_000),
  /** Most events held while the destination fails; beyond it the oldest are dropped (and counted). */
  buffer_size: z.number().int().min(1).default(10_000),
  /** Added to OPA's `labels` (with `id` and `app`). */
  labels: z.record(z.string(), z.string()).default({}),
};

export const auditConfigSchema = z
  .strictObject({
    /** async: records are written behind the request; strict: an allow is forwarded only once its record is durable. */
    mode: z.enum(['async', 'strict']).default('async'),
    /** Names this instance's own decision chain; default: generated once and kept in `<state dir>/instance-id`. */
    instance_id: z
      .string()
      .regex(CHAIN_NAME, "must be 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit")
      .refine((id) => id !== LEGACY_CHAIN, `is reserved for the records written before instances had chains of their own`)
      .optional(),
    /**
     * local: records wait in `spool_dir` (fsync'd) while PostgreSQL is away, and strict mode counts
     * a spooled record as durable. none: no spool, for a state folder that does not outlive the
     * instance (a Kubernetes emptyDir): strict mode refuses (503) what PostgreSQL cannot take,
     * async mode keeps it in memory until PostgreSQL is back.
     */
    spool: z.enum(['local', 'none']).default('local'),
    /** Where records wait while PostgreSQL is away; default `<state dir>/spool`. One per instance. */
    spool_dir: z.string().min(1).optional(),
    /** Partitions whose records are all older than this (by time and by when they were stored) are dropped. */
    retention_days: z.number().int().min(1).max(36_500).default(365),
    /** 401s recorded per client address and minute; beyond it they are counted into one summary record. */
    unauthenticated_per_minute: z.number().int().min(0).default(600),
    /** How often the chain head is signed (a checkpoint). */
    checkpoint_interval_s: z.number().int().min(1).max(86_400).default(60),
    /** Ed25519 private key (PKCS#8 PEM) that signs checkpoints; default: one generated in the state folder. */
    checkpoint_key_file: z.string().min(1).optional(),
    /** JSON pointers into the policy input whose values are never stored or exported. */
    mask: z
      .array(z.string().regex(/^\/.+/, 'must be a JSON pointer such as /request/headers/cookie'))
      .default(['/request/headers/authorization', '/request/headers/cookie']),
    /** Ship records in OPA's decision-log format as well. */
    export: z
      .discriminatedUnion('kind', [
        z.strictObject({ kind: z.literal('stdout'), ...exportTuning }),
        z.strictObject({ kind: z.literal('file'), path: z.string().min(1), ...exportTuning }),
        z.strictObject({
          kind: z.literal('http'),
          /** The collector's endpoint, e.g. https://logs.example.com/logs (OPA posts to <service>/logs). */
          url: z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }),
          headers: z.record(z.string(), z.string()).default({}),
          timeout_ms: z.number().int().positive().default(5_000),
          ...exportTuning,
        }),
      ])
      .optional(),
  })
  .refine((audit) => audit.spool === 'local' || audit.spool_dir === undefined, {
    message: 'is set, but audit.spool is "none": records are never spooled; remove one of the two',
    path: ['spool_dir'],
  })
  .prefault({});

export type AuditConfig = z.infer<typeof auditConfigSchema>;
