// One decision: what was asked (the masked input), what was answered and why, where it sits in
// the hash chain, and three answers to "why was this denied?": the same input re-run against
// the policy serving now, what grant would allow it (explain's missing permission), and the
// record as an `opa test` case to pin it.
import type { DecisionDetail } from '../../audit/store/pg-decision-query-store';
import type { PolicyDecision } from '../../authz/policy-engine';
import type { Explanation } from '../../authz/policy-explainer';
import { copyButton, formatTime, html, outcomeBadge, type Html } from './console-html';
import { queryString } from './decision-query';

export interface Rerun {
  revision: string;
  decision: PolicyDecision;
  differs: boolean;
}

export interface DecisionExplained {
  rerun: Rerun | null;
  /** Null when the record has no subject or method/path to explain with. */
  explanation: Explanation | null;
  error?: string | undefined;
}

export function decisionPage(decision: DecisionDetail, regression: string | null, csrf: string, explained?: DecisionExplained): Html {
  return html`
<p>${outcomeBadge(decision)} <code>${decision.method} ${decision.path}</code> by <a href="/console/decisions${queryString({ subject: decision.subject ?? undefined })}">${
    decision.subject ?? 'an anonymous caller'
  }</a>${decision.organization ? html` in <a href="/console/directory/${decision.organization}">${decision.organization}</a>` : ''}</p>
<dl class="detail">
<dt>Decision id</dt><dd><code id="decision-id">${decision.id}</code> ${copyButton('decision-id', 'Copy id')}</dd>
<dt>Time</dt><dd>${formatTime(decision.time)}</dd>
<dt>Request id</dt><dd><a href="/console/decisions${queryString({ request_id: decision.request_id })}"><code>${decision.request_id}</code></a></dd>
<dt>Action</dt><dd>${decision.action}</dd>
<dt>Result</dt><dd>allow: ${String(decision.allow)}, status ${decision.status}${decision.dry_run ? ' (dry run)' : ''}</dd>
<dt>Reasons</dt><dd>${decision.reasons.length > 0 ? html`<ul class="reasons">${decision.reasons.map((reason) => html`<li>${reason}</li>`)}</ul>` : 'none'}</dd>
<dt>Policy revision</dt><dd><a href="/console/decisions${queryString({ revision: decision.policy_revision ?? undefined })}"><code>${decision.policy_revision ?? 'none'}</code></a></dd>
<dt>Evaluation latency</dt><dd>${decision.eval_latency_us === null ? '–' : `${decision.eval_latency_us} µs`}</dd>
<dt>Directory version</dt><dd>${decision.directory_version ?? '–'}</dd>
<dt>Hash</dt><dd><code class="hash">${decision.hash}</code></dd>
<dt>Previous hash</dt><dd><code class="hash">${decision.prev_hash}</code></dd>
</dl>
<form method="post" action="/console/decisions/${decision.id}/explain" class="inline">
<input type="hidden" name="csrf" value="${csrf}">
<button type="submit">Explain: re-run now and show what would allow it</button>
</form>
${explained ? explainedSection(explained) : ''}
<section aria-labelledby="input-h"><h2 id="input-h">Policy input (masked as stored)</h2>
${decision.input === null ? html`<p>No input was built: the request was refused before the policy was asked.</p>` : html`<pre id="input-json">${JSON.stringify(decision.input, null, 2)}</pre>${copyButton('input-json', 'Copy input')}`}
</section>
<section aria-labelledby="regression-h"><h2 id="regression-h">As a regression test</h2>
${regression === null ? html`<p>Without a stored input this decision cannot be replayed.</p>` : html`<p>Save as a <code>_test.rego</code> file beside the policy; <code>portcullis policy test</code> runs it.</p><pre id="regression">${regression}</pre>${copyButton('regression', 'Copy as regression test')}`}
</section>`;
}

function explainedSection(explained: DecisionExplained): Html {
  const { rerun, explanation } = explained;
  return html`<section aria-labelledby="explained-h" class="explained"><h2 id="explained-h">Explanation</h2>
${explained.error ? html`<p class="error" role="alert">${explained.error}</p>` : ''}
${
  rerun
    ? html`<p id="rerun" class="${rerun.differs ? 'differs' : 'same'}">Re-run of the stored input against revision <code>${rerun.revision}</code>: ${
        rerun.differs ? html`<strong>the answer would differ</strong>` : 'the same answer'
      }: allow ${String(rerun.decision.allow)}, status ${rerun.decision.status}${rerun.decision.reasons.length ? `: ${rerun.decision.reasons.join('; ')}` : ''}.</p>`
    : html`<p>The stored record has no input to re-run.</p>`
}
${
  explanation
    ? html`<p>Explained as <code>${explanation.method} ${explanation.path}</code> for <code>${explanation.subject.sub}</code> with today's directory: ${outcomeBadge(
        {
          allow: explanation.result.allow,
          status: explanation.result.allow ? 200 : explanation.result.status,
        },
      )}</p>${missing(explanation)}`
    : ''
}
</section>`;
}

export function missing(explanation: Explanation): Html {
  const gap = explanation.missing_permission;
  if (!gap) return html``;
  return html`<div class="missing" id="missing-permission"><h3>Missing permission: <code>${gap.permission}</code> in ${gap.organization}</h3>
${
  gap.granted_by.length === 0
    ? html`<p>No role of ${gap.organization} grants it.</p>`
    : html`<ul>${gap.granted_by.map(
        (grant) =>
          html`<li>role <strong>${grant.role}</strong>${grant.builtin ? ' (built-in)' : ''} via <code>${grant.via.join(', ')}</code>${
            grant.teams.length > 0
              ? html`, carried by team${grant.teams.length > 1 ? 's' : ''} ${grant.teams.map((team, i) => html`${i > 0 ? ', ' : ''}<strong>${team}</strong>`)}`
              : ', on no team'
          }</li>`,
      )}</ul>`
}
${gap.would_allow.length > 0 ? html`<p>Would allow: ${gap.would_allow.map((grant, i) => html`${i > 0 ? '; ' : ''}${grant.change === 'team' ? html`joining team <strong>${grant.team}</strong> (role ${grant.role})` : html`default role <strong>${grant.role}</strong>`}`)}.</p>` : ''}
</div>`;
}
