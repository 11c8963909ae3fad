import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { anchorText, CheckpointSigner, checkpointText, keyIdOf, readPublicKey, signatureHolds } from './checkpoint-key';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'checkpoint-key-'));
});
afterEach(async () => rm(dir, { recursive: true, force: true }));

describe('CheckpointSigner', () => {
  it('gives instances starting at once on one state folder the same generated key', async () => {
    const opened = await Promise.all(Array.from({ length: 8 }, () => CheckpointSigner.open(undefined, dir)));
    expect(new Set(opened.map(({ signer }) => signer.keyId)).size).toBe(1);
    expect((await stat(path.join(dir, 'checkpoint-key.pem'))).mode & 0o777).toBe(0o600);
  });

  it('without a key file generates one in the state folder (0600, with its public half) and reuses it', async () => {
    const first = await CheckpointSigner.open(undefined, dir);
    expect(first.generated).toEqual({
      privateKeyFile: path.join(dir, 'checkpoint-key.pem'),
      publicKeyFile: path.join(dir, 'checkpoint-key.pub.pem'),
    });
    expect((await stat(first.generated!.privateKeyFile)).mode & 0o777).toBe(0o600);
    const second = await CheckpointSigner.open(undefined, dir);
    expect(second.signer.keyId).toBe(first.signer.keyId);

    const publicKey = readPublicKey(await readFile(first.generated!.publicKeyFile, 'utf8'), 'pub');
    expect(keyIdOf(publicKey)).toBe(first.signer.keyId);
    const claim = { chain: 'gw-1', seq: 7, hash: 'a'.repeat(64), signedAt: new Date('2026-11-30T10:00:00Z'), prevSeq: 3 };
    const signature = first.signer.sign(checkpointText(claim));
    expect(signatureHolds(publicKey, checkpointText(claim), signature)).toBe(true);
    expect(signatureHolds(publicKey, checkpointText({ ...claim, prevSeq: null }), signature)).toBe(false);
    // Another chain's checkpoint of the same seq and hash is another text.
    expect(signatureHolds(publicKey, checkpointText({ ...claim, chain: 'gw-2' }), signature)).toBe(false);
    expect(
      signatureHolds(
        publicKey,
        anchorText({ chain: 'gw-1', seq: 7, hash: claim.hash, movedAt: claim.signedAt, retentionDays: 3 }),
        signature,
      ),
    ).toBe(false);
  });

  it('loads a configured PKCS#8 Ed25519 key and refuses any other kind, naming the key', async () => {
    const { privateKey } = generateKeyPairSync('ed25519');
    const file = path.join(dir, 'key.pem');
    await writeFile(file, privateKey.export({ type: 'pkcs8', format: 'pem' }));
    const { signer, generated } = await CheckpointSigner.open(file, dir);
    expect(generated).toBeUndefined();
    expect(signer.keyId).toBe(keyIdOf(createPublicKey(privateKey)));

    const rsa = path.join(dir, 'rsa.pem');
    await writeFile(rsa, generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }));
    await expect(CheckpointSigner.open(rsa, dir)).rejects.toThrow(`audit.checkpoint_key_file ${rsa}: is a rsa key; use an Ed25519 key`);
    await expect(CheckpointSigner.open(path.join(dir, 'absent.pem'), dir)).rejects.toThrow(
      /audit\.checkpoint_key_file .*absent\.pem: not a readable PEM private key/,
    );
  });
});
