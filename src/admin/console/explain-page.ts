// The explain playground: a subject, a method and a path in (a GET form, so an answer is a
// link); the route, the policy input, the decision and its reasons out, with the grant path
// of an allow (which role, via the default role or which team) and what would allow a denial.
// The same question as curl against the admin API and as `portcullis explain`.
import type { Explanation } from '../../authz/policy-explainer';
import { copyButton, html, outcomeBadge, type Html } from './console-html';
import { missing } from './decision-page';

export interface ExplainForm {
  subject: string;
  method: string;
  path: string;
}

/** `grantedBy`: for an allow, where the subject's permission comes from (access-page's sourcesOf). */
export function explainPage(
  form: ExplainForm,
  explanation: Explanation | undefined,
  grantedBy: string[],
  error: string | undefined,
  adminUrl: string,
): Html {
  const body = JSON.stringify({ subject: form.subject, method: form.method, path: form.path });
  const curl = `curl -sS -X POST -H "Authorization: Bearer $PORTCULLIS_ADMIN_TOKEN" -H 'content-type: application/json' ${adminUrl}/admin/v1/evaluate -d '${body.replace(/'/g, "'\\''")}'`;
  const cli = `npx portcullis explain --as ${shellWord(form.subject)} ${shellWord(form.method)} ${shellWord(form.path)}`;
  return html`
<form method="get" action="/console/explain" class="filters" aria-label="Explain a request">
<div class="field"><label for="e-subject">Subject (token sub, user id or e-mail)</label><input id="e-subject" name="subject" value="${form.subject}" required></div>
<div class="field"><label for="e-method">Method</label><input id="e-method" name="method" value="${form.method}" required></div>
<div class="field wide"><label for="e-path">Path</label><input id="e-path" name="path" value="${form.path}" required></div>
<div class="actions"><button type="submit">Explain</button></div>
</form>
${error ? html`<p class="error" role="alert">${error}</p>` : ''}
${explanation ? answer(explanation, grantedBy) : ''}
${
  form.subject && form.path
    ? html`<section aria-labelledby="copy-h"><h2 id="copy-h">Ask it elsewhere</h2>
<pre id="as-curl">${curl}</pre>${copyButton('as-curl', 'Copy as curl')}
<pre id="as-cli">${cli}</pre>${copyButton('as-cli', 'Copy as portcullis explain')}</section>`
    : ''
}`;
}

function answer(explanation: Explanation, grantedBy: string[]): Html {
  const status = explanation.result.allow ? 200 : explanation.result.status;
  return html`<section aria-labelledby="answer-h"><h2 id="answer-h">Answer</h2>
<p>${outcomeBadge({ allow: explanation.result.allow, status })} <code>${explanation.method} ${explanation.path}</code> as <code>${explanation.subject.sub}</code>${
    explanation.revision ? html` by revision <code>${explanation.revision}</code>` : ''
  }</p>
<dl class="detail">
<dt>Route</dt><dd>${explanation.route ? html`<code>${explanation.route.pattern}</code> → ${explanation.route.service}` : 'no route matches'}</dd>
<dt>Action</dt><dd>${explanation.action ?? '–'}</dd>
<dt>Reasons</dt><dd>${explanation.result.reasons.length ? html`<ul class="reasons">${explanation.result.reasons.map((reason) => html`<li>${reason}</li>`)}</ul>` : 'none'}</dd>
${explanation.result.allow && explanation.membership ? html`<dt>Granted by</dt><dd id="grant-path">${grantedBy.join('; ') || 'no role of the membership: another rule allowed it'}</dd>` : ''}
${explanation.decision_id ? html`<dt>Recorded as</dt><dd><a href="/console/decisions/${explanation.decision_id}">dry-run decision ${explanation.decision_id}</a></dd>` : ''}
${explanation.shadow ? html`<dt>Shadow policy</dt><dd>${explanation.shadow.agrees ? 'agrees' : 'disagrees'} (revision <code>${explanation.shadow.revision}</code>)</dd>` : ''}
</dl>
${missing(explanation)}
${explanation.input ? html`<h3>Policy input</h3><pre>${JSON.stringify(explanation.input, null, 2)}</pre>` : ''}
</section>`;
}

function shellWord(value: string): string {
  return /^[\w@./:{}-]+$/.test(value) ? value : `'${value.replace(/'/g, "'\\''")}'`;
}
