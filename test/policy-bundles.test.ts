// OPA bundles as policy.source against a running gateway: a bundle server polled with
// ETag / If-None-Match, signatures checked with policy.verification (tampered and unsigned
// bundles refused while the last good one serves, and refused at start), and bundles signed
// by `portcullis policy build --signing-key`.
import { createHash } from 'node:crypto';
import { readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { BundleVerifier } from '../src/authz/bundle-signature';
import { readBundle } from '../src/authz/policy-bundle';
import { requireBuild, runCli, type CliRun } from './support/cli-process';
import { seedDirectory } from './support/directory-fixtures';
import { startHarness, type Harness } from './support/gateway-harness';
import {
  buildBundle,
  copyShippedPolicies,
  generateSigningKeys,
  rewriteBundle,
  scratchDir,
  type SigningKeys,
} from './support/policy-workspace';
import { AUDIENCE, ISSUER } from './support/token-issuer';
import { waitFor } from './support/wait-for';

const ADMIN_TOKEN = 'test-admin-token-0123456789';

interface BundleServer {
  url: string;
  bundle: Buffer;
  requests: Array<{ ifNoneMatch: string | undefined; status: number }>;
  close(): Promise<void>;
}

/** A bundle server as OPA deployments use them: a strong ETag per content, 304 when it matches. */
async function startBundleServer(initial: Buffer): Promise<BundleServer> {
  const state: BundleServer = { url: '', bundle: initial, requests: [], close: () => Promise.resolve() };
  const server = http.createServer((req, res) => {
    const etag = `"${createHash('sha256').update(state.bundle).digest('hex').slice(0, 32)}"`;
    const ifNoneMatch = req.headers['if-none-match'];
    const status = ifNoneMatch === etag ? 304 : 200;
    state.requests.push({ ifNoneMatch, status });
    res.writeHead(status, { etag, 'content-type': 'application/gzip' });
    res.end(status === 200 ? state.bundle : undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/bundles/portcullis.tar.gz`;
  state.close = () => new Promise((resolve) => server.close(() => resolve()));
  return state;
}

function portcullis(args: string[]): Promise<CliRun> {
  return runCli(args, { LOG_LEVEL: 'silent' });
}

let work: string;
let source: string;
let keys: SigningKeys;
let v1: string;
let v2: string;
let server: BundleServer;
let h: Harness;
let bob: string;

const revisionOf = async (file: string) => (await readBundle(await readFile(file))).revision;

async function adminPolicy(): Promise<{
  revision: string;
  source_kind: string;
  loaded_at: string;
  last_error: { message: string } | null;
}> {
  const res = await fetch(`${h.gateway.adminUrl}/admin/v1/policy`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  return (await res.json()) as never;
}

async function bobDeleteDetail(): Promise<string> {
  const res = await h.request('/orgs/acme', { method: 'DELETE', token: bob });
  return ((await res.json()) as { detail: string }).detail;
}

async function rewordDenial(text: string): Promise<void> {
  const file = path.join(source, 'organization.rego');
  const before = await readFile(file, 'utf8');
  const after = before.replace(
    /"[^"]*missing permission '%s' in organization '%s' \(your roles there: %s\)"/,
    `"${text}missing permission '%s' in organization '%s' (your roles there: %s)"`,
  );
  expect(after).not.toBe(before);
  await writeFile(file, after);
}

beforeAll(async () => {
  requireBuild();
  work = await scratchDir('bundles');
  keys = await generateSigningKeys(work, 'rsa');
  source = await copyShippedPolicies(work);
  await rewordDenial('(v1) ');
  v1 = await buildBundle(source, path.join(work, 'v1.tar.gz'), { signingKey: keys.privateKeyFile, algorithm: 'RS256' });
  await rewordDenial('(v2) ');
  v2 = await buildBundle(source, path.join(work, 'v2.tar.gz'), { signingKey: keys.privateKeyFile, algorithm: 'RS256' });

  server = await startBundleServer(await readFile(v1));
  h = await startHarness({ policy: { source: server.url, poll_interval_s: 1, verification: { public_key_file: keys.publicKeyFile } } });
  await seedDirectory(h.database.db);
  bob = await h.tokens.sign('bob|sub');
});

afterAll(async () => {
  await h?.close();
  await server?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

describe('a signed bundle behind an http(s) URL', () => {
  it('is loaded at start and polled with If-None-Match; a 304 changes nothing', async () => {
    const first = await adminPolicy();
    expect(first).toMatchObject({ revision: await revisionOf(v1), source_kind: 'url', last_error: null });
    expect(await bobDeleteDetail()).toMatch(/^\(v1\) missing permission 'organization:delete'/);

    const seen = server.requests.length;
    await waitFor(() => (server.requests.length >= seen + 2 ? true : undefined), { timeoutMs: 5000, what: 'two more polls' });
    const polls = server.requests.slice(seen);
    expect(polls.every((poll) => poll.status === 304 && poll.ifNoneMatch !== undefined)).toBe(true);
    expect(await adminPolicy()).toMatchObject({ revision: first.revision, loaded_at: first.loaded_at });
  });

  it('refuses a bundle whose file was changed after signing; the last good one keeps serving', async () => {
    const good = (await adminPolicy()).revision;
    server.bundle = await readFile(
      await rewriteBundle(v2, path.join(work, 'tampered.tar.gz'), (files) => {
        const name = [...files.keys()].find((file) => file.endsWith('organization.rego'))!;
        files.set(name, Buffer.from(`${files.get(name)!.toString('utf8')}\n# harmless-looking edit\n`));
      }),
    );
    const failure = await waitFor(async () => (await adminPolicy()).last_error ?? undefined, { timeoutMs: 5000, what: 'the refusal' });
    expect(failure.message).toMatch(/^bundle signature rejected: .*organization\.rego does not match its signed digest$/);
    expect((await adminPolicy()).revision).toBe(good);
    expect(await bobDeleteDetail()).toMatch(/^\(v1\) /);
  });

  it('refuses an unsigned bundle the same way', async () => {
    const good = (await adminPolicy()).revision;
    server.bundle = await readFile(await buildBundle(source, path.join(work, 'unsigned.tar.gz')));
    await waitFor(async () => ((await adminPolicy()).last_error?.message.includes('has no .signatures.json') ? true : undefined), {
      timeoutMs: 5000,
      what: 'the refusal',
    });
    expect((await adminPolicy()).revision).toBe(good);
    expect(await bobDeleteDetail()).toMatch(/^\(v1\) /);
  });

  it('serves a correctly signed new bundle within the poll interval', async () => {
    server.bundle = await readFile(v2);
    await waitFor(async () => ((await bobDeleteDetail()).startsWith('(v2) ') ? true : undefined), { timeoutMs: 5000, what: 'v2 to serve' });
    expect(await adminPolicy()).toMatchObject({ revision: await revisionOf(v2), last_error: null });
  });

  it('serves a bundle that `portcullis policy build --signing-key` signed', async () => {
    await rewordDenial('(cli) ');
    const output = path.join(work, 'cli.tar.gz');
    const run = await portcullis(['policy', 'build', '--source', source, '--output', output, '--signing-key', keys.privateKeyFile]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^built .*cli\.tar\.gz \(revision sha256:[0-9a-f]{16}, signed RS256\) in \d+ ms\n$/);
    server.bundle = await readFile(output);
    await waitFor(async () => ((await bobDeleteDetail()).startsWith('(cli) ') ? true : undefined), {
      timeoutMs: 5000,
      what: 'the CLI-built bundle to serve',
    });
  });
});

describe('policy build --signing-key', () => {
  it('signs with ES256 for an EC key, verifiable with its public key', async () => {
    const ec = await generateSigningKeys(work, 'ec');
    const output = path.join(work, 'ec.tar.gz');
    const run = await portcullis(['policy', 'build', '--source', source, '--output', output, '--signing-key', ec.privateKeyFile]);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('signed ES256');
    const verifier = await BundleVerifier.create({ public_key_file: ec.publicKeyFile });
    await expect(verifier.verify((await readBundle(await readFile(output))).files)).resolves.toBeUndefined();
  });

  it('refuses a key that is not a private key, with one line', async () => {
    const run = await portcullis([
      'policy',
      'build',
      '--source',
      source,
      '--output',
      path.join(work, 'never.tar.gz'),
      '--signing-key',
      keys.publicKeyFile,
    ]);
    expect(run.code).toBe(2);
    expect(run.stderr.trim().split('\n')).toHaveLength(1);
    expect(run.stderr).toMatch(/--signing-key: .* is not a PEM private key/);
  });
});

describe('serve with policy.verification', () => {
  async function serveWith(bundle: string): Promise<{ code: number | null; stderr: string }> {
    const config = path.join(work, 'serve.yaml');
    await writeFile(
      config,
      [
        'server: { host: 127.0.0.1, port: 0 }',
        'admin: { host: 127.0.0.1, port: 0 }',
        `database: { url: "${h.database.url}" }`,
        `auth: { issuer: "${ISSUER}", audience: ${AUDIENCE}, jwks_file: jwks.json, algorithms: [ES256] }`,
        `policy: { source: "${bundle}", verification: { public_key_file: "${keys.publicKeyFile}" } }`,
        'services: { organizations: { url: "http://127.0.0.1:9" } }',
      ].join('\n'),
    );
    await writeFile(path.join(work, 'jwks.json'), '{"keys":[]}');
    return portcullis(['serve', '--config', config]);
  }

  it('refuses to start with an unsigned bundle, exiting non-zero with the reason', async () => {
    const run = await serveWith(await buildBundle(source, path.join(work, 'unsigned-at-start.tar.gz')));
    expect(run.code).toBe(1);
    expect(run.stderr.trim()).toBe(
      'portcullis: bundle signature rejected: the bundle has no .signatures.json (build it with `portcullis policy build --signing-key FILE`)',
    );
  });

  it('refuses to start with a tampered bundle', async () => {
    const tampered = await rewriteBundle(v1, path.join(work, 'tampered-at-start.tar.gz'), (files) => {
      files.set('data.json', Buffer.from('{"portcullis":{"open":true}}'));
    });
    const run = await serveWith(tampered);
    expect(run.code).toBe(1);
    expect(run.stderr.trim()).toBe('portcullis: bundle signature rejected: data.json does not match its signed digest');
  });
});
