// `GET /orgs/{org}/events`: the organization's change record, newest first (action audit:read,
// which organization-admin holds through `*`).
import { z } from 'zod';
import { NotFoundError } from '../base/errors';
import { organizationEvents, type DirectoryEventRow } from './directory-events';
import { pageOf, pageQuery } from './http-semantics';
import { defineOperation, type DirectoryDeps, type Operation } from './operation';

export const eventSchema = z.object({
  id: z.string(),
  time: z.iso.datetime(),
  actor: z.uuid().nullable(),
  action: z.string(),
  organization_slug: z.string().nullable(),
  target_type: z.string(),
  target_id: z.string().nullable(),
  before: z.unknown(),
  after: z.unknown(),
  request_id: z.string().nullable(),
  decision_id: z.uuid().nullable(),
});

export function eventRepresentation(row: DirectoryEventRow): z.infer<typeof eventSchema> {
  return {
    id: String(row.id),
    time: row.time.toISOString(),
    actor: row.actor,
    action: row.action,
    organization_slug: row.organization_slug,
    target_type: row.target_type,
    target_id: row.target_id,
    before: row.before,
    after: row.after,
    request_id: row.request_id,
    decision_id: row.decision_id,
  };
}

export const eventsOperations = (deps: DirectoryDeps): Operation[] => [
  defineOperation({
    method: 'GET',
    path: '/orgs/:org/events',
    service: 'organizations',
    summary: "List the organization's directory events, newest first",
    params: z.object({ org: z.string() }),
    query: pageQuery,
    response: pageOf(eventSchema),
    status: 200,
    handler: async ({ params, query }) => {
      const page = await organizationEvents(deps.db, params.org, query);
      if (!page) throw new NotFoundError(`no organization ${params.org}`);
      return { body: { items: page.items.map(eventRepresentation), next_cursor: page.next_cursor } };
    },
  }),
];
