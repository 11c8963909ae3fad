// A real identity provider in miniature: an asymmetric key pair, its JWKS written to a
// file the gateway trusts, and properly signed tokens.
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { exportJWK, generateKeyPair, SignJWT, type JWTPayload, type KeyLike } from 'jose';

export const ISSUER = 'https://id.test.portcullis';
export const AUDIENCE = 'portcullis';

export interface TokenIssuer {
  jwksFile: string;
  sign(sub: string, claims?: JWTPayload, options?: { expiresIn?: string | number; issuer?: string; audience?: string }): Promise<string>;
}

export async function createTokenIssuer(dir: string): Promise<TokenIssuer> {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  const jwk = { ...(await exportJWK(publicKey)), kid: 'test-key-1', alg: 'ES256', use: 'sig' };
  const jwksFile = path.join(dir, 'jwks.json');
  await writeFile(jwksFile, JSON.stringify({ keys: [jwk] }));
  return {
    jwksFile,
    sign: (sub, claims = {}, options = {}) => signWith(privateKey, sub, claims, options),
  };
}

function signWith(key: KeyLike, sub: string, claims: JWTPayload, options: { expiresIn?: string | number; issuer?: string; audience?: string }) {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'ES256', kid: 'test-key-1', typ: 'JWT' })
    .setSubject(sub)
    .setIssuer(options.issuer ?? ISSUER)
    .setAudience(options.audience ?? AUDIENCE)
    .setIssuedAt()
    .setExpirationTime(options.expiresIn ?? '10m')
    .sign(key);
}
