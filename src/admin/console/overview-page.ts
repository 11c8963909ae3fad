// The overview: decisions per hour (7 days) and per day (30 days) as charts with policy
// reloads marked, evaluation latency, the last day's top denials, the policy serving, the audit
// backlog, the hash chain's state and the caches' hit rates. One screen for "is it healthy?".
import type { AuditBacklog } from '../../audit/audit-trail';
import type { PolicyState } from '../../authz/policy-manager';
import { html, jsonBlock, table, formatTime, type Html } from './console-html';
import type { DeniedTops, HourlyCount, TopEntry } from './console-store';
import { queryString } from './decision-query';

export interface OverviewData {
  hourly: HourlyCount[];
  daily: HourlyCount[];
  reloads: { revision: string; at: number }[];
  latency: { p50: number | null; p99: number | null; count: number };
  tops: DeniedTops;
  policy: PolicyState;
  backlog: AuditBacklog;
  chain: { headSeq: number; checkpoint: { seq: number; signedAt: Date; keyId: string } | null };
  caches: Record<string, { hits: number; misses: number; size: number }>;
}

export function overviewPage(data: OverviewData): Html {
  const total = (rows: HourlyCount[]) =>
    rows.reduce((sum, row) => ({ allowed: sum.allowed + row.allowed, denied: sum.denied + row.denied, failed: sum.failed + row.failed }), {
      allowed: 0,
      denied: 0,
      failed: 0,
    });
  const week = total(data.hourly);
  const { checkpoint } = data.chain;
  return html`
<section aria-labelledby="traffic"><h2 id="traffic">Decisions</h2>
<p class="totals">Last 7 days: <strong>${week.allowed.toLocaleString('en')}</strong> allowed, <strong>${week.denied.toLocaleString('en')}</strong> denied,
<strong>${week.failed.toLocaleString('en')}</strong> failed. Vertical lines mark the first decision of each policy revision.</p>
<figure class="chart"><figcaption>Per hour, last 7 days (UTC)</figcaption><div class="chart-box" data-chart="hourly" role="img" aria-label="Allowed, denied and failed decisions per hour over the last 7 days"></div></figure>
<figure class="chart"><figcaption>Per day, last 30 days (UTC)</figcaption><div class="chart-box" data-chart="daily" role="img" aria-label="Allowed, denied and failed decisions per day over the last 30 days"></div></figure>
${jsonBlock('chart-data', { hourly: data.hourly, daily: data.daily, reloads: data.reloads })}
</section>
<div class="grid">
<section aria-labelledby="latency"><h2 id="latency">Policy latency (24 h)</h2>
<dl><dt>p50</dt><dd>${micros(data.latency.p50)}</dd><dt>p99</dt><dd>${micros(data.latency.p99)}</dd><dt>Decisions</dt><dd>${data.latency.count.toLocaleString('en')}</dd></dl></section>
<section aria-labelledby="serving"><h2 id="serving">Policy serving</h2>
<dl><dt>Revision</dt><dd><code>${data.policy.revision}</code></dd><dt>Loaded</dt><dd>${formatTime(data.policy.loadedAt)}</dd>
<dt>Last error</dt><dd>${data.policy.lastError ? html`<span class="error">${failureText(data.policy.lastError)}</span>` : 'none'}</dd></dl>
<p><a href="/console/policy">Policy details</a></p></section>
<section aria-labelledby="audit"><h2 id="audit">Audit</h2>
<dl><dt>Mode</dt><dd>${data.backlog.mode}</dd><dt>Backlog</dt><dd>${data.backlog.backlog} (memory ${data.backlog.memory}, spool ${data.backlog.spool})</dd>
${data.backlog.export ? html`<dt>Export (${data.backlog.export.kind})</dt><dd>${data.backlog.export.pending} pending, ${data.backlog.export.dropped} dropped</dd>` : ''}
<dt>Chain head</dt><dd>seq ${data.chain.headSeq}</dd>
<dt>Last signed checkpoint</dt><dd>${checkpoint ? html`seq ${checkpoint.seq} at ${formatTime(checkpoint.signedAt)} (key ${checkpoint.keyId}); ${data.chain.headSeq - checkpoint.seq} records since` : 'none yet'}</dd></dl></section>
<section aria-labelledby="caches"><h2 id="caches">Cache hit rates</h2>
${table(
  ['cache', 'hit rate', 'hits', 'misses', 'entries'],
  Object.entries(data.caches).map(
    ([name, stats]) =>
      html`<tr><td>${name}</td><td>${rate(stats)}</td><td>${stats.hits}</td><td>${stats.misses}</td><td>${stats.size}</td></tr>`,
  ),
)}</section>
</div>
<section aria-labelledby="denied"><h2 id="denied">Top denials (24 h)</h2>
<div class="grid">
${topTable('Actions', data.tops.actions, 'action')}
${topTable('Subjects', data.tops.subjects, 'subject')}
${topTable('Organizations', data.tops.organizations, 'org')}
${topTable('Reasons', data.tops.reasons, 'reason')}
</div></section>`;
}

function topTable(caption: string, entries: TopEntry[], parameter: string): Html {
  return table(
    [caption, 'denied'],
    entries.map(
      (entry) =>
        html`<tr><td><a href="/console/decisions${queryString({ since: '24h', outcome: 'denied', [parameter]: entry.value })}">${entry.value}</a></td><td>${entry.count}</td></tr>`,
    ),
  );
}

function micros(value: number | null): string {
  if (value === null) return 'no decisions';
  return value >= 1000 ? `${(value / 1000).toFixed(2)} ms` : `${value} µs`;
}

function rate(stats: { hits: number; misses: number }): string {
  const total = stats.hits + stats.misses;
  return total === 0 ? '–' : `${((100 * stats.hits) / total).toFixed(1)} %`;
}

export function failureText(failure: NonNullable<PolicyState['lastError']>): string {
  const where = failure.file ? `${failure.file}${failure.line ? `:${failure.line}` : ''}: ` : '';
  return `${where}${failure.message} (${formatTime(failure.at)})`;
}
