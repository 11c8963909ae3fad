// setUpPolicies: how `policy.*` becomes the active and shadow managers, and the combinations
// it refuses at start with the key that is wrong.
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { generateSigningKeys, scratchDir, testOpa } from '../../test/support/policy-workspace';
import { configSchema } from '../config/config-schema';
import { ConfigError } from '../base/errors';
import { setUpPolicies } from './policy-setup';

const silent = { info: () => undefined, warn: () => undefined, error: () => undefined } as never;
const noStore = { insertMany: () => Promise.resolve() };

let dir: string;
let source: string;

beforeAll(async () => {
  dir = await scratchDir('setup');
  source = path.join(dir, 'policies');
  await mkdir(source);
  await writeFile(
    path.join(source, 'policy.rego'),
    'package portcullis\n\ndecision := {"allow": false, "status": 403, "reasons": ["no"]}\n',
  );
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const policyConfig = (policy: Record<string, unknown>) =>
  configSchema.parse({ auth: { issuer: 'i', audience: 'a', jwks_file: 'k' }, services: {}, policy }).policy;
const setUp = (policy: Record<string, unknown>) =>
  setUpPolicies(policyConfig(policy), {
    buildDir: path.join(dir, 'build'),
    toolchain: { opaBin: testOpa() },
    logger: silent,
    disagreements: noStore,
  });

describe('setUpPolicies', () => {
  it('builds the active policy and, when configured, the shadow policy', async () => {
    const policies = await setUp({ source, shadow: { source } });
    try {
      expect(policies.policy.state()).toMatchObject({ kind: 'directory', source, lastError: null });
      expect(policies.shadow?.manager.state()).toMatchObject({ kind: 'directory', source });
      expect(policies.shadow?.stats()).toEqual({ evaluated: 0, disagreements: 0, unrecorded: 0 });
    } finally {
      await policies.close();
    }
  });

  it('has no shadow policy unless one is configured', async () => {
    const policies = await setUp({ source });
    expect(policies.shadow).toBeUndefined();
    await policies.close();
  });

  it('refuses policy.verification with a directory source: there is no signature to check', async () => {
    const keys = await generateSigningKeys(dir, 'ec');
    const setting = setUp({ source, verification: { public_key_file: keys.publicKeyFile } });
    await expect(setting).rejects.toThrow(ConfigError);
    await expect(setting).rejects.toThrow(/^policy\.verification: signatures are checked on bundles, but policy\.source is a directory/);
  });

  it('names policy.shadow.source when the shadow policy cannot be found', async () => {
    await expect(setUp({ source, shadow: { source: path.join(dir, 'absent') } })).rejects.toThrow(
      `policy.shadow.source: ${path.join(dir, 'absent')} does not exist`,
    );
  });

  it('names policy.shadow.source when the shadow policy does not compile', async () => {
    const broken = path.join(dir, 'broken');
    await mkdir(broken);
    await writeFile(path.join(broken, 'policy.rego'), 'package portcullis\n\ndecision := {"allow" false}\n');
    await expect(setUp({ source, shadow: { source: broken } })).rejects.toThrow(
      /^policy\.shadow\.source: policy compilation failed: .*policy\.rego:3: rego_parse_error/,
    );
  });
});
