// A real identity provider in miniature: an asymmetric key pair, its JWKS written to a
// file the gateway trusts, and properly signed tokens.
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { exportJWK, generateKeyPair, SignJWT, type JWK, type JWTPayload, type KeyLike } from 'jose';

export const ISSUER = 'https://id.test.portcullis';
export const AUDIENCE = 'portcullis';

/** `expiresIn: null` leaves `exp` out; `typ: null` leaves the `typ` header out (default `JWT`). */
export interface SignOptions {
  expiresIn?: string | number | null;
  issuer?: string;
  audience?: string;
  typ?: string | null;
}

export interface TokenIssuer {
  jwksFile: string;
  /** The public key, as an identity provider publishes it. */
  jwk: JWK;
  sign(sub: string, claims?: JWTPayload, options?: SignOptions): Promise<string>;
}

/** `kid`: a second issuer with another kid stands for a rotated-in key. */
export async function createTokenIssuer(dir: string, kid = 'test-key-1'): Promise<TokenIssuer> {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  const jwk = { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' };
  const jwksFile = path.join(dir, 'jwks.json');
  await writeFile(jwksFile, JSON.stringify({ keys: [jwk] }));
  return {
    jwksFile,
    jwk,
    sign: (sub, claims = {}, options = {}) => signWith(privateKey, kid, sub, claims, options),
  };
}

function signWith(key: KeyLike, kid: string, sub: string, claims: JWTPayload, options: SignOptions) {
  const typ = options.typ === undefined ? 'JWT' : options.typ;
  const jwt = new SignJWT(claims)
    .setProtectedHeader({ alg: 'ES256', kid, ...(typ === null ? {} : { typ }) })
    .setSubject(sub)
    .setIssuer(options.issuer ?? ISSUER)
    .setAudience(options.audience ?? AUDIENCE)
    .setIssuedAt();
  if (options.expiresIn !== null) jwt.setExpirationTime(options.expiresIn ?? '10m');
  return jwt.sign(key);
}
