// The decision log page: the filter form (a GET, so the URL holds the filters), a page of
// records newest first with a link to the next (older) page, live mode (console.js streams
// /console/decisions/live with the same filters) and export links for the same filters.
import type { DecisionSummary } from '../../audit/store/pg-decision-query-store';
import { formatTime, html, outcomeBadge, table, type Html } from './console-html';
import { queryString, type FilterValues } from './decision-query';

const FIELDS: { name: keyof FilterValues; label: string; placeholder?: string }[] = [
  { name: 'since', label: 'Since', placeholder: '24h or 2026-11-30T10:00Z' },
  { name: 'until', label: 'Until', placeholder: 'ISO time or duration' },
  { name: 'status', label: 'Status', placeholder: '403' },
  { name: 'subject', label: 'Subject (token sub)' },
  { name: 'user', label: 'User (id or sub)' },
  { name: 'org', label: 'Organization' },
  { name: 'action', label: 'Action', placeholder: 'project:delete' },
  { name: 'route', label: 'Route', placeholder: '/orgs/{org}/projects/{project}' },
  { name: 'reason', label: 'Reason contains' },
  { name: 'revision', label: 'Policy revision' },
  { name: 'id', label: 'Decision id' },
  { name: 'request_id', label: 'Request id' },
];

export function decisionsPage(values: FilterValues, rows: DecisionSummary[], next: string | undefined, error: string | undefined): Html {
  const outcome = values.outcome ?? '';
  return html`
<form method="get" action="/console/decisions" class="filters" aria-label="Filter decisions">
<div class="field"><label for="f-outcome">Outcome</label><select id="f-outcome" name="outcome">
${['', 'allowed', 'denied', 'failed'].map((value) => html`<option value="${value}"${value === outcome ? html` selected` : ''}>${value || 'any'}</option>`)}
</select></div>
${FIELDS.map(
  (field) =>
    html`<div class="field"><label for="f-${field.name}">${field.label}</label><input id="f-${field.name}" name="${field.name}" value="${values[field.name] ?? ''}"${
      field.placeholder ? html` placeholder="${field.placeholder}"` : ''
    }></div>`,
)}
<div class="actions"><button type="submit">Apply filters</button> <a href="/console/decisions">Clear</a></div>
</form>
${error ? html`<p class="error" role="alert">${error}</p>` : ''}
<div class="toolbar">
<button type="button" id="live-toggle" aria-pressed="false" data-live="/console/decisions/live${queryString(values)}">Live mode: off</button>
<span id="live-status" role="status" aria-live="polite"></span>
<a href="/console/decisions/export.csv${queryString(values)}" download>Export CSV</a>
<a href="/console/decisions/export.ndjson${queryString(values)}" download>Export NDJSON</a>
</div>
${table(['time (UTC)', 'outcome', 'subject', 'org', 'action', 'request', 'reason', 'revision'], rows.map(decisionRow), 'Decisions, newest first')}
${next ? html`<p><a href="${next}" rel="next">Older decisions</a></p>` : rows.length > 0 ? html`<p>No older decisions match.</p>` : ''}`;
}

export function decisionRow(decision: DecisionSummary): Html {
  return html`<tr data-seq="${decision.seq}"><td><a href="/console/decisions/${decision.id}">${formatTime(decision.time)}</a></td><td>${outcomeBadge(decision)}${decision.dry_run ? html` <span class="badge dry">dry run</span>` : ''}</td><td>${
    decision.subject ?? '–'
  }</td><td>${decision.organization ?? '–'}</td><td>${decision.action}</td><td><code>${decision.method} ${decision.path}</code></td><td>${decision.reasons[0] ?? ''}</td><td><code>${(
    decision.policy_revision ?? ''
  ).slice(0, 12)}</code></td></tr>`;
}
