// The SQL behind the operator console: the overview's aggregates (from the hourly rollup the
// console migration maintains, and the last 24 hours of the log through its time index), the
// decisions page's filters beyond the admin API's, and the read-only directory pages.
import type { Knex } from 'knex';
import { isUuid } from '../../db/uuid';
import { CommittedHorizon } from '../../audit/store/committed-horizon';
import {
  decisionsAfter,
  pageOfDecisions,
  PgDecisionQueryStore,
  whereDecisionFilter,
  type DecisionFilter,
  type DecisionSummary,
} from '../../audit/store/pg-decision-query-store';

export type Outcome = 'allowed' | 'denied' | 'failed';

/** Everything the decisions page filters on; each key is a query-string parameter of the same meaning. */
export interface ConsoleFilter extends DecisionFilter {
  outcome?: Outcome | undefined;
  status?: number | undefined;
  /** A users.id or a token subject. */
  userRef?: string | undefined;
  /** The route pattern the request matched (`/orgs/{org}/projects/{project}`). */
  route?: string | undefined;
  /** Case-insensitive text within any reason. */
  reason?: string | undefined;
  revision?: string | undefined;
  decisionId?: string | undefined;
  requestId?: string | undefined;
}

export interface HourlyCount {
  /** Epoch seconds of the hour (or day) start, UTC. */
  at: number;
  allowed: number;
  denied: number;
  failed: number;
}

export interface TopEntry {
  value: string;
  count: number;
}

export interface DeniedTops {
  actions: TopEntry[];
  subjects: TopEntry[];
  organizations: TopEntry[];
  reasons: TopEntry[];
}

export interface MemberGrants {
  userId: string;
  subject: string;
  email: string | null;
  name: string | null;
  defaultRole: string;
  defaultPermissions: string[];
  teams: { team: string; role: string; permissions: string[] }[];
}

const TOP = 8;

export class ConsoleStore {
  constructor(private readonly db: Knex | Knex.Transaction) {}

  /** Per hour (`day`: per UTC day) from the rollup, oldest first, every bucket present (zeros included). */
  async counts(unit: 'hour' | 'day', since: Date, until: Date): Promise<HourlyCount[]> {
    const step = unit === 'hour' ? '1 hour' : '1 day';
    const { rows } = await this.db.raw<{ rows: { at: string; allowed: string; denied: string; failed: string }[] }>(
      `with buckets as (
         select generate_series(date_trunc(?, ?::timestamptz, 'UTC'), date_trunc(?, ?::timestamptz, 'UTC'), ?::interval) as at
       ), counted as (
         select date_trunc(?, hour, 'UTC') as at, sum(allowed) as allowed, sum(denied) as denied, sum(failed) as failed
         from decision_hourly where hour >= date_trunc(?, ?::timestamptz, 'UTC') and hour < ?::timestamptz group by 1
       )
       select extract(epoch from b.at)::bigint as at, coalesce(c.allowed, 0) as allowed, coalesce(c.denied, 0) as denied, coalesce(c.failed, 0) as failed
       from buckets b left join counted c on c.at = b.at order by b.at`,
      [unit, since.toISOString(), unit, until.toISOString(), step, unit, unit, since.toISOString(), until.toISOString()],
    );
    return rows.map((row) => ({
      at: Number(row.at),
      allowed: Number(row.allowed),
      denied: Number(row.denied),
      failed: Number(row.failed),
    }));
  }

  /** When each policy revision first decided a served request, within the window. */
  async revisionsSeen(since: Date): Promise<{ revision: string; at: number }[]> {
    const rows = (await this.db('decision_revisions')
      .select('policy_revision', 'first_seen')
      .where('first_seen', '>=', since.toISOString())
      .orderBy('first_seen')) as {
      policy_revision: string;
      first_seen: Date;
    }[];
    return rows.map((row) => ({ revision: row.policy_revision, at: Math.floor(row.first_seen.getTime() / 1000) }));
  }

  /** p50 and p99 policy evaluation latency (µs) of served decisions since `since`. */
  async latency(since: Date): Promise<{ p50: number | null; p99: number | null; count: number }> {
    const { rows } = await this.db.raw<{ rows: { p50: number | null; p99: number | null; n: string }[] }>(
      `select percentile_disc(0.5) within group (order by eval_latency_us) as p50, percentile_disc(0.99) within group (order by eval_latency_us) as p99, count(*) as n
       from decisions where time >= ? and not dry_run and eval_latency_us is not null`,
      [since.toISOString()],
    );
    const row = rows[0]!;
    return { p50: row.p50, p99: row.p99, count: Number(row.n) };
  }

  /** The most frequent denied actions, subjects, organizations and first reasons since `since`, in one pass. */
  async deniedTops(since: Date): Promise<DeniedTops> {
    const { rows } = await this.db.raw<{ rows: { kind: string; value: string | null; n: string }[] }>(
      `with denied as (
         select action, subject, organization, reasons[1] as reason from decisions where time >= ? and not allow and not dry_run
       ), grouped as (
         select case when grouping(action) = 0 then 'actions' when grouping(subject) = 0 then 'subjects' when grouping(organization) = 0 then 'organizations' else 'reasons' end as kind,
                coalesce(action, subject, organization, reason) as value, count(*) as n
         from denied group by grouping sets ((action), (subject), (organization), (reason))
       )
       select kind, value, n from (select *, row_number() over (partition by kind order by n desc, value) as rank from grouped where value is not null) ranked
       where rank <= ${TOP} order by kind, n desc, value`,
      [since.toISOString()],
    );
    const tops: DeniedTops = { actions: [], subjects: [], organizations: [], reasons: [] };
    for (const row of rows) tops[row.kind as keyof DeniedTops].push({ value: row.value!, count: Number(row.n) });
    return tops;
  }

  /**
   * The chains' records (the sum of their heads), the newest signed checkpoint, and how many
   * records no checkpoint covers yet: `checkpoint.seq` is the sum of each chain's newest checkpoint.
   */
  async chain(): Promise<{ headSeq: number; checkpoint: { seq: number; signedAt: Date; keyId: string } | null }> {
    const { rows } = await this.db.raw<{
      rows: { head: string | null; covered: string | null; signed_at: Date | null; key_id: string | null }[];
    }>(
      `select (select sum(seq) from decision_chain_head) as head,
              (select sum(s) from (select max(seq) as s from decision_checkpoints group by chain) newest) as covered,
              c.signed_at, c.key_id
       from (select 1) one left join lateral (select signed_at, key_id from decision_checkpoints order by signed_at desc limit 1) c on true`,
    );
    const row = rows[0];
    return {
      headSeq: Number(row?.head ?? 0),
      checkpoint: row?.signed_at && row.key_id ? { seq: Number(row.covered ?? 0), signedAt: row.signed_at, keyId: row.key_id } : null,
    };
  }

  /** Newest first by seq, below `beforeSeq` when given; one more row than `limit` tells whether older ones match. */
  decisions(
    filter: ConsoleFilter,
    options: { limit: number; beforeSeq?: number | undefined },
  ): Promise<{ decisions: DecisionSummary[]; more: boolean }> {
    return pageOfDecisions(this.filtered(filter), options.limit, options.beforeSeq);
  }

  /** Records with seq in (afterSeq, throughSeq] matching the filter, oldest first (the live stream; throughSeq from horizon()). */
  decisionsAfter(filter: ConsoleFilter, afterSeq: number, throughSeq: number, limit: number): Promise<DecisionSummary[]> {
    return decisionsAfter(this.filtered(filter), afterSeq, throughSeq, limit);
  }

  /** How far the live stream may read without skipping a record that commits late (one per stream). */
  horizon(): CommittedHorizon {
    return new CommittedHorizon(new PgDecisionQueryStore(this.db));
  }

  /** The token subject of the user with this e-mail (case-insensitive), if exactly one has it. */
  async subjectByEmail(email: string): Promise<string | undefined> {
    const rows = (await this.db('users').select('subject').whereRaw('lower(email) = lower(?)', [email]).limit(2)) as { subject: string }[];
    return rows.length === 1 ? rows[0]!.subject : undefined;
  }

  async organizations(): Promise<{ slug: string; name: string; members: number; teams: number; projects: number }[]> {
    const { rows } = await this.db.raw<{ rows: { slug: string; name: string; members: string; teams: string; projects: string }[] }>(
      `select o.slug, o.name,
              (select count(*) from organization_members m where m.organization_id = o.id) as members,
              (select count(*) from teams t where t.organization_id = o.id) as teams,
              (select count(*) from projects p where p.organization_id = o.id) as projects
       from organizations o order by o.slug collate "C"`,
    );
    return rows.map((row) => ({
      slug: row.slug,
      name: row.name,
      members: Number(row.members),
      teams: Number(row.teams),
      projects: Number(row.projects),
    }));
  }

  /** One organization's directory as its pages show it; undefined when there is no such slug. */
  async organization(slug: string) {
    const org = (await this.db('organizations').first('id', 'slug', 'name', 'created_at').where({ slug })) as
      { id: string; slug: string; name: string; created_at: Date } | undefined;
    if (!org) return undefined;
    const [members, teams, roles, invitations, projects] = await Promise.all([
      this.members(org.slug),
      this.db.raw<{ rows: { name: string; members: string[]; roles: string[] }[] }>(
        `select t.name,
                array(select u.subject from team_members tm join users u on u.id = tm.user_id where tm.team_id = t.id order by u.subject collate "C") as members,
                array(select r.name from team_roles tr join roles r on r.id = tr.role_id where tr.team_id = t.id order by r.name collate "C") as roles
         from teams t where t.organization_id = ? order by t.name collate "C"`,
        [org.id],
      ),
      this.db('roles')
        .select('name', 'permissions', this.db.raw('organization_id is null as builtin'))
        .where({ organization_id: org.id })
        .orWhereNull('organization_id')
        .orderBy('name'),
      this.db('invitations as i')
        .join('roles as r', 'r.id', 'i.role_id')
        .select('i.id', 'i.email', 'r.name as role', 'i.accepted_at', 'i.created_at')
        .where('i.organization_id', org.id)
        .orderBy('i.created_at', 'desc'),
      this.db('projects').select('id', 'slug', 'name').where({ organization_id: org.id }).orderBy('slug'),
    ]);
    return {
      slug: org.slug,
      name: org.name,
      createdAt: org.created_at,
      members,
      teams: teams.rows,
      roles: roles as { name: string; permissions: string[]; builtin: boolean }[],
      invitations: invitations as { id: string; email: string; role: string; accepted_at: Date | null; created_at: Date }[],
      projects: projects as { id: string; slug: string; name: string | null }[],
    };
  }

  /** Members of the organization with their default role and the roles their teams carry (R4: only usable roles). */
  async members(slug: string): Promise<MemberGrants[]> {
    const { rows } = await this.db.raw<{
      rows: {
        user_id: string;
        subject: string;
        email: string | null;
        display_name: string | null;
        default_role: string;
        default_permissions: string[];
        teams: { team: string; role: string; permissions: string[] }[];
      }[];
    }>(
      `select u.id as user_id, u.subject, u.email, u.display_name, dr.name as default_role, dr.permissions as default_permissions,
              coalesce((select json_agg(json_build_object('team', t.name, 'role', r.name, 'permissions', r.permissions) order by t.name, r.name)
                        from team_members tm
                        join teams t on t.id = tm.team_id and t.organization_id = m.organization_id
                        join team_roles tr on tr.team_id = t.id
                        join roles r on r.id = tr.role_id and (r.organization_id is null or r.organization_id = m.organization_id)
                        where tm.user_id = m.user_id), '[]'::json) as teams
       from organizations o
       join organization_members m on m.organization_id = o.id
       join users u on u.id = m.user_id
       join roles dr on dr.id = m.role_id
       where o.slug = ?
       order by u.subject collate "C"`,
      [slug],
    );
    return rows.map((row) => ({
      userId: row.user_id,
      subject: row.subject,
      email: row.email,
      name: row.display_name,
      defaultRole: row.default_role,
      defaultPermissions: row.default_permissions,
      teams: row.teams,
    }));
  }

  private filtered(filter: ConsoleFilter): Knex.QueryBuilder {
    const query = whereDecisionFilter(this.db('decisions'), filter);
    if (filter.outcome === 'allowed') query.where('allow', true);
    if (filter.outcome === 'denied') query.where('allow', false).andWhere('status', '<', 500);
    if (filter.outcome === 'failed') query.where('allow', false).andWhere('status', '>=', 500);
    if (filter.status !== undefined) query.where('status', filter.status);
    if (filter.userRef !== undefined) {
      const ref = filter.userRef;
      query.where((either) => {
        either.where('subject', ref);
        if (isUuid(ref)) either.orWhere('user_id', ref);
      });
    }
    if (filter.route !== undefined) query.whereRaw(`input->'request'->>'route' = ?`, [filter.route]);
    if (filter.reason !== undefined)
      query.whereRaw(`array_to_string(reasons, ' ') ilike ?`, [`%${filter.reason.replace(/[\\%_]/g, (c) => `\\${c}`)}%`]);
    if (filter.revision !== undefined) {
      // A revision's records are one stretch of seq (revisions replace each other), which the
      // planner cannot know: without the upper bound it walks the seq index down from the
      // newest record through every later revision's records.
      const newest = this.db('decisions').max('seq').where('policy_revision', filter.revision);
      query.where('policy_revision', filter.revision).andWhere('seq', '<=', newest);
    }
    if (filter.decisionId !== undefined)
      query.where('id', isUuid(filter.decisionId) ? filter.decisionId : '00000000-0000-0000-0000-000000000000');
    if (filter.requestId !== undefined) query.where('request_id', filter.requestId);
    return query;
  }
}
