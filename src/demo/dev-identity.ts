// The demo's identity provider: an ES256 key pair kept in the state folder (private key
// 0600), its public JWKS for the gateway to trust, and tokens minted for demo users.
import { generateKeyPairSync } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { exportJWK, generateKeyPair, importJWK, SignJWT, type JWK } from 'jose';

export const DEV_ISSUER = 'https://portcullis.dev.local';
export const DEV_AUDIENCE = 'portcullis';
const KEY_FILE = 'dev-signing-key.json';
const JWKS_FILE = 'dev-jwks.json';
const ASSERTION_KEY_FILE = 'dev-assertion-key.pem';

export interface DevIdentity {
  jwksFile: string;
  /** The gateway's own Ed25519 key for identity assertions, stable across demo restarts. */
  assertionKeyFile: string;
  /** A token for `sub`, valid for `ttlSeconds` (default 12 hours). */
  mint(sub: string, claims?: Record<string, unknown>, ttlSeconds?: number): Promise<string>;
}

/** Loads the development key from `stateDir`, creating it (and its JWKS) the first time. */
export async function ensureDevIdentity(stateDir: string): Promise<DevIdentity> {
  const keyFile = path.join(stateDir, KEY_FILE);
  if (!existsSync(keyFile)) {
    await mkdir(stateDir, { recursive: true });
    const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
    const kid = `dev-${Date.now().toString(36)}`;
    await writeFile(keyFile, JSON.stringify({ ...(await exportJWK(privateKey)), kid, alg: 'ES256' }), { mode: 0o600 });
    await writeFile(
      path.join(stateDir, JWKS_FILE),
      JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' }] }),
    );
  }
  const assertionKeyFile = path.join(stateDir, ASSERTION_KEY_FILE);
  if (!existsSync(assertionKeyFile)) {
    const { privateKey } = generateKeyPairSync('ed25519');
    await writeFile(assertionKeyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  }
  return loadDevIdentity(stateDir);
}

/** Loads an existing development key; a person is told to start the demo first when there is none. */
export async function loadDevIdentity(stateDir: string): Promise<DevIdentity> {
  const keyFile = path.join(stateDir, KEY_FILE);
  if (!existsSync(keyFile)) throw new Error(`no development signing key in ${stateDir}: run \`npm start\` once to create it`);
  const jwk = JSON.parse(await readFile(keyFile, 'utf8')) as JWK & { kid: string };
  const key = await importJWK(jwk, 'ES256');
  return {
    jwksFile: path.join(stateDir, JWKS_FILE),
    assertionKeyFile: path.join(stateDir, ASSERTION_KEY_FILE),
    mint: (sub, claims = {}, ttlSeconds = 12 * 3600) =>
      new SignJWT(claims)
        .setProtectedHeader({ alg: 'ES256', kid: jwk.kid, typ: 'JWT' })
        .setSubject(sub)
        .setIssuer(DEV_ISSUER)
        .setAudience(DEV_AUDIENCE)
        .setIssuedAt()
        .setExpirationTime(Math.floor(Date.now() / 1000) + ttlSeconds)
        .sign(key),
  };
}
