// The policy page: the revision serving, its source, entrypoints, load time and last error
// (with file and line), a reload button, the shadow policy's state with its disagreements side
// by side a page at a time, and a replay of a candidate policy against a window of the log.
import type { ChangeGroup, ReplayReport } from '../../audit/replay/decision-replay';
import type { DisagreementSummary } from '../../audit/store/pg-shadow-disagreement-store';
import type { PolicyState } from '../../authz/policy-manager';
import type { ShadowStats } from '../../authz/shadow-policy';
import { formatTime, html, table, type Html } from './console-html';
import { failureText } from './overview-page';

export interface PolicyPageData {
  state: PolicyState;
  shadow: { state: PolicyState; stats: ShadowStats } | undefined;
  disagreements: { rows: DisagreementSummary[]; next: string | undefined };
  /** The outcome of a reload just asked for. */
  reload?: { ok: boolean; message: string } | undefined;
  replay?: { form: ReplayForm; report?: ReplayReport | undefined; error?: string | undefined } | undefined;
}

export interface ReplayForm {
  candidate: string;
  since: string;
  until: string;
}

export function policyPage(data: PolicyPageData, csrf: string): Html {
  const { state } = data;
  const replayForm = data.replay?.form ?? { candidate: '', since: '24h', until: '' };
  return html`
${data.reload ? html`<p class="${data.reload.ok ? 'notice' : 'error'}" role="${data.reload.ok ? 'status' : 'alert'}" id="reload-outcome">${data.reload.message}</p>` : ''}
<section aria-labelledby="serving-h"><h2 id="serving-h">Serving</h2>
${stateList(state)}
<form method="post" action="/console/policy/reload"><input type="hidden" name="csrf" value="${csrf}"><button type="submit">Reload the policy now</button></form>
</section>
<section aria-labelledby="shadow-h"><h2 id="shadow-h">Shadow policy</h2>
${
  data.shadow
    ? html`${stateList(data.shadow.state)}<p>Evaluated ${data.shadow.stats.evaluated} requests; ${data.shadow.stats.disagreements} disagreements; ${data.shadow.stats.unrecorded} not recorded.</p>`
    : html`<p>No shadow policy is configured (<code>policy.shadow</code>).</p>`
}
${table(
  ['time (UTC)', 'request', 'subject', 'serving', 'shadow'],
  data.disagreements.rows.map(
    (row) =>
      html`<tr><td><a href="/console/decisions/${row.decision_id}">${formatTime(row.time)}</a></td><td><code>${row.method} ${row.path}</code></td><td>${row.subject ?? '–'}</td><td>${side(row.active)}</td><td>${side(row.shadow)}</td></tr>`,
  ),
  'Disagreements, newest first',
)}
${data.disagreements.next ? html`<p><a href="${data.disagreements.next}" rel="next">Older disagreements</a></p>` : ''}
</section>
<section aria-labelledby="replay-h"><h2 id="replay-h">Replay a candidate</h2>
<p>Re-evaluates the recorded inputs of a time window with a candidate policy (a directory of <code>.rego</code> or a bundle <code>.tar.gz</code> on this server) and groups every decision that would change, as <code>portcullis decisions replay</code> does.</p>
<form method="post" action="/console/policy/replay" class="filters">
<input type="hidden" name="csrf" value="${csrf}">
<div class="field wide"><label for="r-candidate">Candidate path</label><input id="r-candidate" name="candidate" value="${replayForm.candidate}" required></div>
<div class="field"><label for="r-since">Since</label><input id="r-since" name="since" value="${replayForm.since}"></div>
<div class="field"><label for="r-until">Until</label><input id="r-until" name="until" value="${replayForm.until}"></div>
<div class="actions"><button type="submit">Run replay</button></div>
</form>
${data.replay?.error ? html`<p class="error" role="alert">${data.replay.error}</p>` : ''}
${data.replay?.report ? replayReport(data.replay.report) : ''}
</section>`;
}

function stateList(state: PolicyState): Html {
  return html`<dl class="detail">
<dt>Revision</dt><dd><code>${state.revision}</code></dd>
<dt>Source</dt><dd><code>${state.source}</code> (${state.kind})</dd>
<dt>Entrypoints</dt><dd>${state.entrypoints.join(', ')}</dd>
<dt>Loaded</dt><dd>${formatTime(state.loadedAt)}</dd>
<dt>Last error</dt><dd id="last-error">${state.lastError ? html`<span class="error">${failureText(state.lastError)}</span>` : 'none'}</dd>
</dl>`;
}

function side(decision: { revision: string; allow: boolean; status: number; reasons: string[] }): Html {
  return html`${decision.allow ? 'allow' : `deny ${decision.status}`}<br><small>${decision.reasons.join('; ')}</small><br><code>${decision.revision.slice(0, 12)}</code>`;
}

function replayReport(report: ReplayReport): Html {
  return html`<div id="replay-report"><p>Candidate revision <code>${report.revision}</code>: replayed ${report.replayed}, unchanged ${report.unchanged}, changed ${report.changed}
(${report.flipped} flipped, ${report.statusChanged} new status, ${report.errors} errors); ${report.skipped} without a stored input.</p>
${table(
  ['change', 'recorded by', 'action', 'organization', 'reason', 'count', 'examples'],
  report.groups.map(
    (group: ChangeGroup) =>
      html`<tr><td>${group.change}</td><td><code>${(group.recordedRevision ?? '–').slice(0, 12)}</code></td><td>${group.action}</td><td>${group.organization ?? '–'}</td><td>${group.reason}</td><td>${group.count}</td><td>${group.examples.map(
        (id) => html`<a href="/console/decisions/${id}">${id.slice(0, 8)}</a> `,
      )}</td></tr>`,
  ),
  'Changes, grouped',
)}</div>`;
}
