// Directory stage contract: who the caller is in PostgreSQL terms (design §3.4 `subject`)
// and the facts a route's resource needs (`facts`). Rego does no I/O; everything it
// judges is loaded here.
import type { Resource } from '../routes/route';

export interface Membership {
  /** Name of the member's default role (organization_members.role_id). */
  role: string;
  /** Names of the member's teams in this organization. */
  teams: string[];
  /** Every counted role: the default role and the roles of those teams (R4). */
  roles: string[];
  /** Union of the counted roles' permissions, sorted, without duplicates. */
  permissions: string[];
}

export interface Subject {
  /** users.id, or null when the token's subject has no users row. */
  id: string | null;
  sub: string;
  email: string | null;
  /** Keyed by organization slug. */
  memberships: Record<string, Membership>;
}

export interface SubjectLoader {
  load(sub: string): Promise<Subject>;
  /** A cache's entry at hand, without waiting (a hit counts as one); undefined when it must be loaded. */
  cached?(sub: string): Subject | undefined;
  /**
   * A cache's load that reads with `read` on a miss instead of its own loader (a read of both, for
   * one). It calls `read` before it returns when it starts a read, and never when it joins one in
   * flight: the judge then reads the facts alone.
   */
  loadThrough?(sub: string, read: () => Promise<Subject>): Promise<Subject>;
}

export type Facts = Record<string, Record<string, unknown>>;

export interface FactsLoader {
  /** Loads exactly the facts the resource (and, for R5, the action) needs. */
  load(resource: Resource, action: string): Promise<Facts>;
  /** A cache's entry at hand, without waiting (a hit counts as one); undefined when it must be loaded. */
  cached?(resource: Resource, action: string): Facts | undefined;
  /** A cache's load that reads with `read` on a miss instead of its own loader (a read of both, for one). */
  loadThrough?(resource: Resource, action: string, read: () => Promise<Facts>): Promise<Facts>;
}

/** The subject and the facts together, in one read: for a request that has neither cached. */
export interface DirectoryReader {
  load(sub: string, resource: Resource, action: string): Promise<{ subject: Subject; facts: Facts }>;
}
