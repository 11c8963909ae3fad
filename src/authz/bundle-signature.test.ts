// BundleVerifier against bundles signed by the real `opa build --signing-key`: RSA and EC keys,
// tampered, unsigned, re-signed with another key, and data whose JSON formatting OPA normalises.
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { buildBundle, generateSigningKeys, rewriteBundle, scratchDir, type SigningKeys } from '../../test/support/policy-workspace';
import { ConfigError } from '../base/errors';
import { BundleSignatureError, BundleVerifier, signingAlgorithmFor } from './bundle-signature';
import { readBundle } from './policy-bundle';

const POLICY = `package portcullis

decision := {"allow": data.settings.open, "status": 403, "reasons": [data.settings.label]}
`;

// Formatting OPA discards before hashing: number literals kept as written, keys unordered,
// characters Go escapes differently from JavaScript, non-ASCII keys.
const DATA =
  '{\n  "settings": {"open": false, "label": "a<b & c>d \u2028 é", "ratio": 1.50, "big": 12345678901234567890, "neg": -0.0e1,\n  "ñ": 1, "z": 2, "nested": [{"b": null, "a": [true, "\\u0007\\t"]}]}\n}';

let dir: string;
let source: string;
let rsa: SigningKeys;
let ec: SigningKeys;
let other: SigningKeys;
let signedRsa: string;
let signedEc: string;
let unsigned: string;

beforeAll(async () => {
  dir = await scratchDir('signature');
  source = path.join(dir, 'policies');
  await mkdir(source);
  await writeFile(path.join(source, 'policy.rego'), POLICY);
  await writeFile(path.join(source, 'data.json'), DATA);
  [rsa, ec, other] = await Promise.all([
    generateSigningKeys(dir, 'rsa'),
    generateSigningKeys(dir, 'ec'),
    generateSigningKeys(dir, 'rsa', 'other'),
  ]);
  signedRsa = await buildBundle(source, path.join(dir, 'rsa.tar.gz'), { signingKey: rsa.privateKeyFile, algorithm: 'RS256' });
  signedEc = await buildBundle(source, path.join(dir, 'ec.tar.gz'), { signingKey: ec.privateKeyFile, algorithm: 'ES256' });
  unsigned = await buildBundle(source, path.join(dir, 'unsigned.tar.gz'));
}, 30_000);

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

const filesOf = async (file: string) => (await readBundle(await readFile(file))).files;

async function rejection(verifier: BundleVerifier, file: string): Promise<Error> {
  const error = await verifier.verify(await filesOf(file)).then(
    () => undefined,
    (thrown: unknown) => thrown as Error,
  );
  if (!error) throw new Error(`${path.basename(file)} was accepted`);
  expect(error).toBeInstanceOf(BundleSignatureError);
  return error;
}

describe('BundleVerifier', () => {
  it('accepts a bundle signed by opa with an RSA key, including data.json and .manifest digests', async () => {
    const verifier = await BundleVerifier.create({ public_key_file: rsa.publicKeyFile });
    expect(verifier.algorithm).toBe('RS256');
    const files = await filesOf(signedRsa);
    // opa names Rego files by the path it was given (absolute here).
    expect([...files.keys()]).toHaveLength(5);
    expect([...files.keys()]).toEqual(
      expect.arrayContaining([
        '.manifest',
        '.signatures.json',
        'data.json',
        expect.stringMatching(/policies\/policy\.rego$/),
        'policy.wasm',
      ]),
    );
    await expect(verifier.verify(files)).resolves.toBeUndefined();
  });

  it('accepts a bundle signed with an EC P-256 key, deriving ES256 from the key', async () => {
    const verifier = await BundleVerifier.create({ public_key_file: ec.publicKeyFile });
    expect(verifier.algorithm).toBe('ES256');
    await expect(verifier.verify(await filesOf(signedEc))).resolves.toBeUndefined();
  });

  it('refuses a bundle without .signatures.json', async () => {
    const verifier = await BundleVerifier.create({ public_key_file: rsa.publicKeyFile });
    expect((await rejection(verifier, unsigned)).message).toMatch(/the bundle has no \.signatures\.json/);
  });

  it('refuses a bundle signed with another key', async () => {
    const verifier = await BundleVerifier.create({ public_key_file: other.publicKeyFile });
    expect((await rejection(verifier, signedRsa)).message).toMatch(/does not verify with the configured RS256 key/);
  });

  it('refuses a signature made with an algorithm other than the configured one', async () => {
    const verifier = await BundleVerifier.create({ public_key_file: rsa.publicKeyFile, algorithm: 'PS256' });
    expect((await rejection(verifier, signedRsa)).message).toMatch(/does not verify with the configured PS256 key/);
  });

  it('refuses a bundle whose policy.wasm was replaced after signing', async () => {
    const verifier = await BundleVerifier.create({ public_key_file: rsa.publicKeyFile });
    const tampered = await rewriteBundle(signedRsa, path.join(dir, 'tampered-wasm.tar.gz'), (files) => {
      files.set('policy.wasm', Buffer.concat([files.get('policy.wasm')!, Buffer.from([0])]));
    });
    expect((await rejection(verifier, tampered)).message).toBe('bundle signature rejected: policy.wasm does not match its signed digest');
  });

  it('refuses a bundle whose data.json changes a value, but not one that only reformats it', async () => {
    const verifier = await BundleVerifier.create({ public_key_file: rsa.publicKeyFile });
    const reformatted = await rewriteBundle(signedRsa, path.join(dir, 'reformatted.tar.gz'), (files) => {
      const data = files.get('data.json')!.toString('utf8');
      files.set('data.json', Buffer.from(`\n\n${data.replace(/,/g, ' ,  ')}\n`));
    });
    await expect(verifier.verify(await filesOf(reformatted))).resolves.toBeUndefined();

    const opened = await rewriteBundle(signedRsa, path.join(dir, 'opened.tar.gz'), (files) => {
      files.set('data.json', Buffer.from(files.get('data.json')!.toString('utf8').replace('"open":false', '"open":true')));
    });
    expect((await rejection(verifier, opened)).message).toBe('bundle signature rejected: data.json does not match its signed digest');

    const renumbered = await rewriteBundle(signedRsa, path.join(dir, 'renumbered.tar.gz'), (files) => {
      files.set('data.json', Buffer.from(files.get('data.json')!.toString('utf8').replace('1.50', '1.5')));
    });
    expect((await rejection(verifier, renumbered)).message).toMatch(/data\.json does not match/);
  });

  it('refuses a bundle with a file the signature does not list, or without one it lists', async () => {
    const verifier = await BundleVerifier.create({ public_key_file: rsa.publicKeyFile });
    const added = await rewriteBundle(signedRsa, path.join(dir, 'added.tar.gz'), (files) => {
      files.set('policies/extra.rego', Buffer.from('package portcullis\n'));
    });
    expect((await rejection(verifier, added)).message).toBe(
      'bundle signature rejected: policies/extra.rego is in the bundle but not in its signature',
    );
    const rego = [...(await filesOf(signedRsa)).keys()].find((name) => name.endsWith('policy.rego'))!;
    const removed = await rewriteBundle(signedRsa, path.join(dir, 'removed.tar.gz'), (files) => {
      expect(files.delete(rego)).toBe(true);
    });
    expect((await rejection(verifier, removed)).message).toBe(`bundle signature rejected: signed files missing from the bundle: ${rego}`);
  });

  it('refuses a .signatures.json with other than exactly one signature', async () => {
    const verifier = await BundleVerifier.create({ public_key_file: rsa.publicKeyFile });
    const doubled = await rewriteBundle(signedRsa, path.join(dir, 'doubled.tar.gz'), (files) => {
      const [token] = (JSON.parse(files.get('.signatures.json')!.toString('utf8')) as { signatures: string[] }).signatures;
      files.set('.signatures.json', Buffer.from(JSON.stringify({ signatures: [token, token] })));
    });
    expect((await rejection(verifier, doubled)).message).toMatch(/must hold exactly one signature/);
  });

  it('rejects a verification key file that is missing or not a public key', async () => {
    await expect(BundleVerifier.create({ public_key_file: path.join(dir, 'absent.pem') })).rejects.toThrow(ConfigError);
    await expect(BundleVerifier.create({ public_key_file: path.join(source, 'policy.rego') })).rejects.toThrow(/is not a PEM public key/);
  });
});

describe('signingAlgorithmFor', () => {
  it('picks RS256 for RSA keys and ES256 for P-256 keys', async () => {
    expect(await signingAlgorithmFor(rsa.privateKeyFile)).toBe('RS256');
    expect(await signingAlgorithmFor(ec.privateKeyFile)).toBe('ES256');
  });

  it('refuses a file that is not a private key', async () => {
    await expect(signingAlgorithmFor(rsa.publicKeyFile)).rejects.toThrow(/is not a PEM private key/);
  });
});
