// OPA bundle signatures (`.signatures.json`, as `opa build --signing-key` writes them): one
// JWS whose payload lists every file of the bundle with its digest. A bundle is accepted only
// when the JWS verifies with the configured public key and every file matches its digest.
import { createHash, createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { compactVerify, importSPKI, type KeyLike } from 'jose';
import { isLosslessNumber, parse as parseLossless } from 'lossless-json';
import { ConfigError } from '../base/errors';

export const SIGNATURES_FILE = '.signatures.json';

/** The algorithms OPA signs bundles with (its JWS implementation has no EdDSA). */
const ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512'] as const;
export type BundleSigningAlgorithm = (typeof ALGORITHMS)[number];

const HASHES: Readonly<Record<string, string>> = { 'SHA-256': 'sha256', 'SHA-384': 'sha384', 'SHA-512': 'sha512' };

/** A bundle whose signature is missing or does not match. */
export class BundleSignatureError extends Error {
  constructor(message: string) {
    super(`bundle signature rejected: ${message}`);
    this.name = 'BundleSignatureError';
  }
}

/** The algorithm a key of this type signs with by default: RS256 for RSA, ES256/384/512 by curve. */
export function algorithmForKey(key: KeyObject): BundleSigningAlgorithm {
  if (key.asymmetricKeyType === 'rsa') return 'RS256';
  if (key.asymmetricKeyType === 'rsa-pss') return 'PS256';
  if (key.asymmetricKeyType === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve === 'prime256v1') return 'ES256';
    if (curve === 'secp384r1') return 'ES384';
    if (curve === 'secp521r1') return 'ES512';
  }
  throw new ConfigError(
    `bundle signing keys must be RSA or EC (P-256, P-384, P-521); this one is ${key.asymmetricKeyType}${key.asymmetricKeyDetails?.namedCurve ? ` ${key.asymmetricKeyDetails.namedCurve}` : ''}`,
  );
}

/** For `policy build --signing-key`: the `--signing-alg` opa needs for this private key. */
export async function signingAlgorithmFor(privateKeyFile: string): Promise<BundleSigningAlgorithm> {
  let pem: string;
  try {
    pem = await readFile(privateKeyFile, 'utf8');
  } catch (error) {
    throw new ConfigError(`--signing-key: cannot read ${privateKeyFile}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
  }
  try {
    return algorithmForKey(createPrivateKey(pem));
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    throw new ConfigError(`--signing-key: ${privateKeyFile} is not a PEM private key`);
  }
}

interface SignedFile {
  name: string;
  hash: string;
  algorithm: string;
}

export class BundleVerifier {
  private constructor(
    private readonly key: KeyLike,
    readonly algorithm: BundleSigningAlgorithm,
  ) {}

  /** `policy.verification`: a PEM public key (SPKI) and optionally the algorithm it must be used with. */
  static async create(options: { public_key_file: string; algorithm?: string | undefined }): Promise<BundleVerifier> {
    let pem: string;
    try {
      pem = await readFile(options.public_key_file, 'utf8');
    } catch (error) {
      throw new ConfigError(
        `policy.verification.public_key_file: cannot read ${options.public_key_file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`,
      );
    }
    let publicKey: KeyObject;
    try {
      publicKey = createPublicKey(pem);
    } catch {
      throw new ConfigError(`policy.verification.public_key_file: ${options.public_key_file} is not a PEM public key`);
    }
    const algorithm = (options.algorithm as BundleSigningAlgorithm | undefined) ?? algorithmForKey(publicKey);
    if (!ALGORITHMS.includes(algorithm)) throw new ConfigError(`policy.verification.algorithm: must be one of ${ALGORITHMS.join(', ')}`);
    try {
      return new BundleVerifier(await importSPKI(pem, algorithm), algorithm);
    } catch (error) {
      throw new ConfigError(`policy.verification: the key cannot be used with ${algorithm}: ${(error as Error).message}`);
    }
  }

  /** Throws a BundleSignatureError unless every file of the bundle is signed and unchanged. */
  async verify(files: ReadonlyMap<string, Buffer>): Promise<void> {
    const signatures = files.get(SIGNATURES_FILE);
    if (!signatures)
      throw new BundleSignatureError(`the bundle has no ${SIGNATURES_FILE} (build it with \`portcullis policy build --signing-key FILE\`)`);
    const token = onlyToken(signatures);
    let payload: Uint8Array;
    try {
      ({ payload } = await compactVerify(token, this.key, { algorithms: [this.algorithm] }));
    } catch (error) {
      throw new BundleSignatureError(
        `the signature does not verify with the configured ${this.algorithm} key (${(error as Error).message})`,
      );
    }
    const signed = signedFiles(payload);
    for (const [name, bytes] of files) {
      if (name === SIGNATURES_FILE) continue;
      const entry = signed.get(name);
      if (!entry) throw new BundleSignatureError(`${name} is in the bundle but not in its signature`);
      const actual = fileDigest(name, bytes, entry.algorithm);
      if (actual !== entry.hash.toLowerCase()) throw new BundleSignatureError(`${name} does not match its signed digest`);
      signed.delete(name);
    }
    if (signed.size > 0) throw new BundleSignatureError(`signed files missing from the bundle: ${[...signed.keys()].join(', ')}`);
  }
}

function onlyToken(bytes: Buffer): string {
  let document: unknown;
  try {
    document = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new BundleSignatureError(`${SIGNATURES_FILE} is not JSON`);
  }
  const list = (document as { signatures?: unknown } | null)?.signatures;
  if (!Array.isArray(list) || list.length !== 1 || typeof list[0] !== 'string') {
    throw new BundleSignatureError(`${SIGNATURES_FILE} must hold exactly one signature`);
  }
  return list[0];
}

function signedFiles(payload: Uint8Array): Map<string, SignedFile> {
  let claims: unknown;
  try {
    claims = JSON.parse(Buffer.from(payload).toString('utf8'));
  } catch {
    throw new BundleSignatureError('the signature payload is not JSON');
  }
  const files = (claims as { files?: unknown } | null)?.files;
  if (!Array.isArray(files)) throw new BundleSignatureError('the signature payload lists no files');
  const signed = new Map<string, SignedFile>();
  for (const file of files as Partial<SignedFile>[]) {
    if (typeof file?.name !== 'string' || typeof file.hash !== 'string' || typeof file.algorithm !== 'string') {
      throw new BundleSignatureError('the signature payload has a malformed file entry');
    }
    signed.set(file.name.replace(/^\/+/, ''), file as SignedFile);
  }
  return signed;
}

/**
 * OPA's digest of a bundle file: the raw bytes, except for data and manifest files, which are
 * hashed as a canonical JSON walk (keys sorted, numbers as written), so that formatting does
 * not change the digest.
 */
export function fileDigest(name: string, bytes: Buffer, algorithm: string): string {
  const hashName = HASHES[algorithm];
  if (!hashName) throw new BundleSignatureError(`${name} is signed with ${algorithm}; only ${Object.keys(HASHES).join(', ')} are accepted`);
  const hash = createHash(hashName);
  if (!isStructured(name)) return hash.update(bytes).digest('hex');
  let value: unknown;
  try {
    value = parseLossless(bytes.toString('utf8'));
  } catch (error) {
    throw new BundleSignatureError(`${name} is not valid JSON: ${(error as Error).message}`);
  }
  const parts: string[] = [];
  canonical(value, parts);
  return hash.update(parts.join(''), 'utf8').digest('hex');
}

function isStructured(name: string): boolean {
  const base = name.slice(name.lastIndexOf('/') + 1);
  return base === 'data.json' || base === '.manifest';
}

// Mirrors OPA's bundle/hash.go: objects as {"k":v,...} in byte order of the keys, arrays as
// [v,...], primitives as Go's JSON encoder writes them (no HTML escaping, U+2028/2029 escaped).
function canonical(value: unknown, out: string[]): void {
  if (isLosslessNumber(value)) {
    out.push(value.value);
  } else if (Array.isArray(value)) {
    out.push('[');
    value.forEach((item, index) => {
      if (index > 0) out.push(',');
      canonical(item, out);
    });
    out.push(']');
  } else if (value !== null && typeof value === 'object') {
    const keys = Object.keys(value).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    out.push('{');
    keys.forEach((key, index) => {
      if (index > 0) out.push(',');
      out.push(goString(key), ':');
      canonical((value as Record<string, unknown>)[key], out);
    });
    out.push('}');
  } else if (typeof value === 'string') {
    out.push(goString(value));
  } else {
    out.push(JSON.stringify(value));
  }
}

function goString(text: string): string {
  // Go replaces lone surrogates with U+FFFD when it decodes the JSON.
  const wellFormed = text.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');
  return JSON.stringify(wellFormed)
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
}
