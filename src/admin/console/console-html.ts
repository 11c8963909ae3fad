// HTML for the console's server-rendered pages: a tagged template that escapes every value
// unless it is already markup, and the page layout (navigation, skip link, static assets).
// Pages carry no inline script or style: data for scripts travels in data-* attributes or
// <script type="application/json"> blocks, which the CSP does not execute.

export class Html {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

type Value = Html | string | number | boolean | null | undefined | readonly Value[];

export function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

function render(value: Value): string {
  if (value === null || value === undefined || value === false) return '';
  if (value instanceof Html) return value.text;
  if (Array.isArray(value)) return value.map(render).join('');
  return escapeHtml(String(value));
}

export function html(strings: TemplateStringsArray, ...values: Value[]): Html {
  let out = strings[0]!;
  values.forEach((value, index) => {
    out += render(value) + strings[index + 1]!;
  });
  return new Html(out);
}

/** JSON for a <script type="application/json"> block: `<` escaped so no text can close the element. */
export function jsonBlock(id: string, value: unknown): Html {
  return new Html(`<script type="application/json" id="${escapeHtml(id)}">${JSON.stringify(value).replace(/</g, '\\u003c')}</script>`);
}

export const NAV = [
  ['overview', '/console/', 'Overview'],
  ['decisions', '/console/decisions', 'Decisions'],
  ['explain', '/console/explain', 'Explain'],
  ['access', '/console/access', 'Access map'],
  ['policy', '/console/policy', 'Policy'],
  ['directory', '/console/directory', 'Directory'],
] as const;

export type Section = (typeof NAV)[number][0];

export interface PageOptions {
  title: string;
  section?: Section | undefined;
  csrf?: string | undefined;
  /** Extra scripts under /console/static/ or /console/vendor/. */
  scripts?: string[];
  styles?: string[];
}

export function page(options: PageOptions, body: Html): string {
  const nav = options.csrf
    ? html`<nav aria-label="Console"><ul>${NAV.map(
        ([key, href, label]) =>
          html`<li><a href="${href}"${key === options.section ? new Html(' aria-current="page"') : ''}>${label}</a></li>`,
      )}</ul>
      <form method="post" action="/console/sign-out" class="sign-out"><input type="hidden" name="csrf" value="${options.csrf}"><button type="submit">Sign out</button></form></nav>`
    : '';
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(options.title)} · Portcullis console</title>
${(options.styles ?? []).map((href) => `<link rel="stylesheet" href="${escapeHtml(href)}">`).join('\n')}
<link rel="stylesheet" href="/console/static/console.css">
${['/console/static/console.js', ...(options.scripts ?? [])].map((src) => `<script src="${escapeHtml(src)}" defer></script>`).join('\n')}
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header><span class="brand">Portcullis console</span>${nav.toString()}</header>
<main id="main" tabindex="-1">
<h1>${escapeHtml(options.title)}</h1>
${body.text}
</main>
</body>
</html>`;
}

/** A copy button for the text of the element with `target`'s id (console.js wires it). */
export function copyButton(target: string, label: string): Html {
  return html`<button type="button" class="copy" data-copy="${target}">${label}</button>`;
}

export function formatTime(time: string | Date): string {
  const iso = typeof time === 'string' ? time : time.toISOString();
  return iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

export function outcomeOf(decision: { allow: boolean; status: number }): 'allowed' | 'denied' | 'failed' {
  if (decision.allow) return 'allowed';
  return decision.status >= 500 ? 'failed' : 'denied';
}

export function outcomeBadge(decision: { allow: boolean; status: number }): Html {
  const outcome = outcomeOf(decision);
  return html`<span class="badge ${outcome}">${outcome} ${decision.status}</span>`;
}

export function table(headers: readonly string[], rows: readonly Html[], caption?: string): Html {
  return html`<table>${caption ? html`<caption>${caption}</caption>` : ''}<thead><tr>${headers.map((h) => html`<th scope="col">${h}</th>`)}</tr></thead><tbody>${
    rows.length > 0 ? rows : html`<tr><td colspan="${headers.length}">None.</td></tr>`
  }</tbody></table>`;
}
