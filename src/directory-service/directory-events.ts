// The record of every change the directory service makes: one `directory_events` row per
// write, appended in the write's own transaction so the record and the change commit together.
// before/after are representations (never picture bytes or secrets), masked by
// `directory.event_mask` the way decision records are masked by `audit.mask`.
import type { Knex } from 'knex';
import { DecisionMask } from '../audit/recording/decision-mask';
import type { Actor } from './assertion-verifier';
import { paginate, type Page, type PageQuery } from './http-semantics';
import type { OrganizationRow } from './organization-store';

export interface DirectoryEvent {
  actor: Pick<Actor, 'userId' | 'requestId' | 'decisionId'> | null;
  /** `<target type>.<verb>`, e.g. `organization.create`, `member.update`. */
  action: string;
  organizationId: string | null;
  organizationSlug: string | null;
  targetType: string;
  targetId: string | null;
  before: unknown;
  after: unknown;
}

/** An event as `GET /orgs/{org}/events` and `portcullis directory events` show it. */
export interface DirectoryEventRow {
  id: string;
  time: Date;
  actor: string | null;
  action: string;
  organization_id: string | null;
  organization_slug: string | null;
  target_type: string;
  target_id: string | null;
  before: unknown;
  after: unknown;
  request_id: string | null;
  decision_id: string | null;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export class DirectoryEvents {
  private readonly mask: DecisionMask;

  constructor(maskPointers: readonly string[] = []) {
    this.mask = new DecisionMask(maskPointers);
  }

  /** Appends one event; call it with the transaction that makes the change. */
  async append(trx: Knex.Transaction, event: DirectoryEvent): Promise<void> {
    const json = (value: unknown) => (value === undefined || value === null ? null : JSON.stringify(this.mask.applyToInput(value)));
    const decisionId = event.actor?.decisionId ?? null;
    await trx('directory_events').insert({
      actor: event.actor?.userId ?? null,
      action: event.action,
      organization_id: event.organizationId,
      organization_slug: event.organizationSlug,
      target_type: event.targetType,
      target_id: event.targetId,
      before: json(event.before),
      after: json(event.after),
      request_id: event.actor?.requestId ?? null,
      // The gateway's decision ids are uuids; anything else is not one of its decisions.
      decision_id: decisionId !== null && UUID.test(decisionId) ? decisionId : null,
    });
  }
}

/** Events newest first, of one organization (by slug: it may be gone) or of all (the CLI). */
export async function listEvents(db: Knex, options: { organizationSlug?: string; limit: number }): Promise<DirectoryEventRow[]> {
  const query = db('directory_events').select('*').orderBy('id', 'desc').limit(options.limit);
  if (options.organizationSlug !== undefined) query.where({ organization_slug: options.organizationSlug });
  return (await query) as DirectoryEventRow[];
}

/** The events of an existing organization, newest first, one page at a time (`GET /orgs/{org}/events`). */
export async function organizationEvents(db: Knex, slug: string, page: PageQuery): Promise<Page<DirectoryEventRow> | undefined> {
  const organization = await db<OrganizationRow>('organizations').where({ slug }).first('id');
  if (!organization) return undefined;
  const query = db('directory_events').select('*').where({ organization_id: organization.id });
  return paginate<DirectoryEventRow>(query, page, { columns: [{ column: 'id', field: 'id' }], direction: 'desc' });
}
