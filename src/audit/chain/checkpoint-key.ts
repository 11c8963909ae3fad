// The Ed25519 key that signs decision-log checkpoints and retention's anchor moves, and the
// exact texts it signs. It lives outside the database (audit.checkpoint_key_file), so whoever
// can rewrite the tables cannot re-sign them; auditors verify with the public half alone.
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError } from '../../base/errors';
import { writeOnce } from '../../base/write-once';
import { LEGACY_CHAIN } from './decision-chain';

/** A chain's head as a checkpoint signs it. */
export interface CheckpointClaim {
  chain: string;
  seq: number;
  hash: string;
  signedAt: Date;
  /** The checkpoint before this one, so a deleted checkpoint leaves a gap; null for the first. */
  prevSeq: number | null;
}

/** Where retention moved a chain's verification anchor, when, and under which retention setting. */
export interface AnchorClaim {
  chain: string;
  seq: number;
  hash: string;
  movedAt: Date;
  retentionDays: number;
}

// v2 texts name the chain, so a signature cannot be moved to another chain; the legacy chain's
// are v1, as they were signed before chains had names.
const signedChain = (kind: string, chain: string): string =>
  chain === LEGACY_CHAIN ? `portcullis-${kind}/v1` : `portcullis-${kind}/v2\n${chain}`;

export function checkpointText(claim: CheckpointClaim): string {
  return `${signedChain('checkpoint', claim.chain)}\n${claim.seq}\n${claim.hash}\n${claim.signedAt.toISOString()}\n${claim.prevSeq ?? '-'}`;
}

export function anchorText(claim: AnchorClaim): string {
  return `${signedChain('anchor', claim.chain)}\n${claim.seq}\n${claim.hash}\n${claim.movedAt.toISOString()}\n${claim.retentionDays}`;
}

/** First 16 hex digits of the SHA-256 of the public key (SPKI DER): which key signed a row. */
export function keyIdOf(publicKey: KeyObject): string {
  return createHash('sha256')
    .update(publicKey.export({ type: 'spki', format: 'der' }))
    .digest('hex')
    .slice(0, 16);
}

export class CheckpointSigner {
  readonly keyId: string;

  constructor(private readonly privateKey: KeyObject) {
    this.keyId = keyIdOf(createPublicKey(privateKey));
  }

  /** Loads `file`; without one, the key at `<stateDir>/checkpoint-key.pem`, generated on first use. */
  static async open(
    file: string | undefined,
    stateDir: string,
  ): Promise<{ signer: CheckpointSigner; generated?: { privateKeyFile: string; publicKeyFile: string } }> {
    if (file) return { signer: new CheckpointSigner(await readPrivateKey(file, 'audit.checkpoint_key_file')) };
    const privateKeyFile = path.join(stateDir, 'checkpoint-key.pem');
    const publicKeyFile = path.join(stateDir, 'checkpoint-key.pub.pem');
    const existing = await readFile(privateKeyFile).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return undefined;
      throw error;
    });
    if (existing)
      return {
        signer: new CheckpointSigner(await readPrivateKey(privateKeyFile, 'the generated checkpoint key')),
        generated: { privateKeyFile, publicKeyFile },
      };
    const { privateKey } = generateKeyPairSync('ed25519');
    await mkdir(stateDir, { recursive: true });
    // Two instances starting at once on one state folder keep the first one's key, read whole.
    await writeOnce(privateKeyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, 0o600);
    const stored = await readPrivateKey(privateKeyFile, 'the generated checkpoint key');
    await writeFile(publicKeyFile, createPublicKey(stored).export({ type: 'spki', format: 'pem' }));
    return { signer: new CheckpointSigner(stored), generated: { privateKeyFile, publicKeyFile } };
  }

  /** base64 Ed25519 signature of the text. */
  sign(text: string): string {
    return sign(null, Buffer.from(text, 'utf8'), this.privateKey).toString('base64');
  }
}

async function readPrivateKey(file: string, what: string): Promise<KeyObject> {
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: await readFile(file), format: 'pem' });
  } catch (error) {
    throw new ConfigError(`${what} ${file}: not a readable PEM private key (${(error as Error).message.split('\n')[0]})`);
  }
  if (key.asymmetricKeyType !== 'ed25519')
    throw new ConfigError(
      `${what} ${file}: is a ${key.asymmetricKeyType ?? 'unknown'} key; use an Ed25519 key (openssl genpkey -algorithm ed25519)`,
    );
  return key;
}

/** An Ed25519 public key (SPKI PEM, as `openssl pkey -pubout` writes it). */
export function readPublicKey(pem: string, file: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey({ key: pem, format: 'pem' });
  } catch (error) {
    throw new Error(`${file}: not a PEM public key (${(error as Error).message.split('\n')[0]})`);
  }
  if (key.asymmetricKeyType !== 'ed25519')
    throw new Error(`${file}: is a ${key.asymmetricKeyType ?? 'unknown'} key; checkpoints are signed with Ed25519`);
  return key;
}

export function signatureHolds(publicKey: KeyObject, text: string, signature: string): boolean {
  try {
    return verify(null, Buffer.from(text, 'utf8'), publicKey, Buffer.from(signature, 'base64'));
  } catch {
    return false;
  }
}
