// The console in a real browser: Debian's Chromium driven by playwright-core against a real
// gateway with real traffic, a policy directory the test breaks, and screenshots in the
// git-ignored .screenshots/ folder.
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { projectRoot } from '../src/project-root';
import { seedDirectory, type Directory } from './support/directory-fixtures';
import { startHarness, type Harness } from './support/gateway-harness';
import { copyShippedPolicies, scratchDir } from './support/policy-workspace';
import type { Inserted } from './support/rows';
import { waitFor } from './support/wait-for';

const CHROMIUM = '/usr/bin/chromium';
const TOKEN = 'test-admin-token-0123456789';
const SHOTS = path.join(projectRoot, '.screenshots');

let harness: Harness;
let browser: Browser;
let page: Page;
let workspace: string;
let policyDir: string;
let directory: Directory;
/** What the browser reported as refused by the Content-Security-Policy, on any page. */
const cspViolations: string[] = [];

jest.setTimeout(60_000);

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: npm test's pretest installs it as root (apt-get install chromium)`);
  workspace = await scratchDir('console-browser');
  policyDir = await copyShippedPolicies(workspace);
  harness = await startHarness({ policy: { source: policyDir } });
  directory = await seedDirectory(harness.database.db);
  // A role that grants deleting projects, carried by a team bob is not in.
  const db = harness.database.db;
  const role = (
    (await db('roles')
      .insert({ organization_id: directory.orgs.acme, name: 'project-admin', permissions: ['project:*'] })
      .returning('id')) as Inserted
  )[0].id;
  await db('team_roles').insert({ team_id: directory.teams.builders, role_id: role });

  // Real traffic: allowed reads, a denial, a 401.
  const alice = await harness.tokens.sign('alice|sub');
  const bob = await harness.tokens.sign('bob|sub');
  for (let i = 0; i < 3; i += 1) expect((await harness.request('/orgs/acme', { token: alice })).status).toBe(200);
  expect((await harness.request('/orgs/acme/projects/web', { method: 'DELETE', token: bob })).status).toBe(403);
  expect((await harness.request('/orgs/acme')).status).toBe(401);
  await waitFor(async () => Number((await db('decisions').count({ n: '*' }).first())?.n) >= 5);

  await mkdir(SHOTS, { recursive: true });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-dev-shm-usage',
    ],
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  page = await context.newPage();
  page.on('console', (message) => {
    if (/Content Security Policy/i.test(message.text())) cspViolations.push(message.text());
  });
});

afterAll(async () => {
  await browser?.close();
  await harness?.close();
  if (workspace) await rm(workspace, { recursive: true, force: true });
});

const url = (p: string) => `${harness.gateway.adminUrl}${p}`;

describe('the operator console in Chromium', () => {
  it('signs in with the admin token and renders the overview chart with data', async () => {
    await page.goto(url('/console/'));
    await page.getByLabel('Admin token').fill(TOKEN);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL(url('/console/'));
    const chart = page.locator('[data-chart="hourly"]');
    await chart.locator('canvas').waitFor();
    expect(Number(await chart.getAttribute('data-total'))).toBeGreaterThanOrEqual(5);
    await page.screenshot({ path: path.join(SHOTS, 'overview.png') });
  });

  it('filters decisions by subject and outcome, opens the denial and explains it with the granting role and team', async () => {
    await page.goto(url('/console/decisions'));
    await page.getByLabel('Subject (token sub)').fill('bob|sub');
    await page.getByLabel('Outcome').selectOption('denied');
    await page.getByRole('button', { name: 'Apply filters' }).click();
    await page.waitForURL(/subject=bob%7Csub/);
    expect(page.url()).toContain('outcome=denied');
    const rows = page.locator('main table tbody tr');
    await expect(rows.count()).resolves.toBe(1);
    await rows.first().locator('a').first().click();
    await page.getByRole('button', { name: /Explain/ }).click();
    const missing = page.locator('#missing-permission');
    await missing.waitFor();
    const text = await missing.innerText();
    expect(text).toContain('project:delete');
    expect(text).toMatch(/role project-admin via project:\*, carried by team Builders/);
    await page.screenshot({ path: path.join(SHOTS, 'decision.png'), fullPage: false });
  });

  it('answers who can delete projects on the access map', async () => {
    await page.goto(url('/console/access?org=acme'));
    await page.getByLabel('Who can do (action)').selectOption('project:delete');
    await page.getByRole('button', { name: 'Show' }).click();
    const answer = await page.locator('#who-can').innerText();
    expect(answer).toContain('alice|sub: default role organization-admin');
    expect(answer).not.toContain('bob|sub');
  });

  it('shows a new decision arriving in live mode', async () => {
    await page.goto(url('/console/decisions?subject=carol%7Csub'));
    await page.getByRole('button', { name: 'Live mode: off' }).click();
    await page.getByText('Waiting for new decisions').waitFor();
    const carol = await harness.tokens.sign('carol|sub');
    await harness.request('/orgs/acme', { token: carol });
    await page.locator('tr.fresh').first().waitFor({ timeout: 10_000 });
    expect(await page.locator('tr.fresh').first().innerText()).toContain('organization:read');
  });

  it('reloads a broken policy and shows the error with its file and line, then signs out', async () => {
    const source = path.join(policyDir, 'organization.rego');
    await writeFile(source, `${await readFile(source, 'utf8')}\nbroken rule {{{\n`);
    await page.goto(url('/console/policy'));
    await page.getByRole('button', { name: 'Reload the policy now' }).click();
    const outcome = await page.locator('#reload-outcome').innerText();
    expect(outcome).toMatch(new RegExp(`${path.basename(source).replace('.', '\\.')}:\\d+`));
    expect(await page.locator('#last-error').innerText()).toMatch(/:\d+: /);
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.waitForURL(/\/console\/sign-in/);
    await page.goto(url('/console/'));
    await page.waitForURL(/\/console\/sign-in\?next=/);
  });

  it('ran every page without a Content-Security-Policy violation', () => {
    expect(cspViolations).toEqual([]);
  });
});
