// Audit stage contract: every decision, allow or deny, becomes one record (design §3.6).
// Recording never blocks the request; secrets (tokens, cookies) never enter a record.

export interface DecisionRecord {
  id: string;
  time: Date;
  requestId: string;
  /** JWT `sub`, or null when authentication failed before one was known. */
  subject: string | null;
  userId: string | null;
  /** Organization slug, when the route is org-scoped. */
  organization: string | null;
  action: string;
  resource: Record<string, unknown>;
  method: string;
  path: string;
  allow: boolean;
  status: number;
  reasons: string[];
  /**
   * The outcome's stable code (PolicyDecision.code, or the gateway's own: `unauthenticated`,
   * `dependency_unavailable`, `client_gone`, `shutting_down`, `suppressed`) and its params.
   * Null or absent when the policy set none.
   */
  code?: string | null;
  codeParams?: Record<string, unknown> | null;
  policyRevision: string | null;
  evalLatencyUs: number | null;
  /** The policy input as evaluated (never contains the token), or null if none was built. */
  input: unknown;
  /** A dry run (admin evaluate, `portcullis explain`): judged like a request, never served. Default false. */
  dryRun?: boolean;
  /**
   * The directory state the decision saw: the newest `directory_version` its subject and facts
   * were read at (a cached subject keeps the version it was read at). Null or absent when
   * nothing was read from the directory (a 401, a failure before the lookups).
   */
  directoryVersion?: number | null;
  /**
   * The client's address (the connection's peer), for the recorder's per-client limits
   * (audit.unauthenticated_per_minute). Not stored: it is not part of the hashed record.
   */
  clientAddress?: string | null;
}

export interface DecisionRecorder {
  /** Queues the record; returns at once. */
  record(record: DecisionRecord): void;
  /**
   * Resolves once the record is durable (in PostgreSQL, or fsync'd to the local spool);
   * rejects when it cannot be, and the record is then not kept. `audit.mode: strict` awaits
   * this before forwarding an allowed request.
   */
  recordDurably(record: DecisionRecord): Promise<void>;
  /** Resolves when everything queued so far is in PostgreSQL. */
  flush(): Promise<void>;
  close(): Promise<void>;
}
