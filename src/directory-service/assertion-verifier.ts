// Who is calling: the directory service believes only the gateway's signed identity assertion
// (`x-portcullis-assertion`, design §3.5), verified for the service the route belongs to. This
// file is the reference for every service owner behind Portcullis (README "Verifying the
// assertion in your own service").
import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { IncomingHttpHeaders } from 'node:http';
import { createRemoteJWKSet, jwtVerify, type JWTVerifyGetKey } from 'jose';
import type { PortcullisConfig } from '../config/config-schema';
import { AuthenticationError, ConfigError } from '../base/errors';

/** The caller of a directory operation, as the gateway vouched for it. */
export interface Actor {
  /** users.id (claim `sub`); null while the caller has not registered (`PUT /users/me`). */
  userId: string | null;
  /** The identity provider's subject (claim `portcullis_sub`). */
  sub: string;
  /** The organization slug of an org-scoped route. */
  org: string | null;
  email?: string;
  emailVerified?: boolean;
  name?: string;
  /** The gateway's request id and decision id, recorded with every change. */
  requestId: string | null;
  decisionId: string | null;
}

export type DirectoryServiceName = 'organizations' | 'users' | 'projects';

export const ASSERTION_HEADER = 'x-portcullis-assertion';

const ALGORITHMS = ['EdDSA', 'ES256'];

export class AssertionVerifier {
  private constructor(
    private readonly key: KeyObject | JWTVerifyGetKey,
    private readonly issuer: string,
  ) {}

  /** The gateway's key set from `directory.gateway_jwks_url`, else the public half of `assertion.signing_key_file`. */
  static async create(config: Pick<PortcullisConfig, 'directory' | 'assertion'>): Promise<AssertionVerifier> {
    const { gateway_jwks_url: jwksUrl } = config.directory;
    if (jwksUrl) return new AssertionVerifier(createRemoteJWKSet(new URL(jwksUrl)), config.assertion.issuer);
    const file = config.assertion.signing_key_file;
    if (!file) {
      throw new ConfigError(
        "directory.gateway_jwks_url or assertion.signing_key_file is required: the directory service accepts only requests carrying the gateway's identity assertion",
      );
    }
    let publicKey: KeyObject;
    try {
      publicKey = createPublicKey(createPrivateKey({ key: await readFile(file), format: 'pem' }));
    } catch (error) {
      throw new ConfigError(`assertion.signing_key_file ${file}: not a readable PEM private key (${(error as Error).message})`);
    }
    return new AssertionVerifier(publicKey, config.assertion.issuer);
  }

  /** The actor of a request to `service`; 401 without a valid assertion meant for that service. */
  async verify(headers: IncomingHttpHeaders, service: DirectoryServiceName): Promise<Actor> {
    const token = headers[ASSERTION_HEADER];
    if (typeof token !== 'string' || token === '') {
      throw new AuthenticationError(`no ${ASSERTION_HEADER}: call the directory service through the Portcullis gateway`, 'invalid_request');
    }
    let claims: Record<string, unknown>;
    try {
      const verified = await jwtVerify(token, this.key as KeyObject, {
        issuer: this.issuer,
        audience: `portcullis:${service}`,
        algorithms: ALGORITHMS,
        requiredClaims: ['exp', 'iat'],
      });
      claims = verified.payload;
    } catch (error) {
      throw new AuthenticationError(`the ${ASSERTION_HEADER} does not verify: ${(error as Error).message}`, 'invalid_token', {
        cause: error,
      });
    }
    if (typeof claims.portcullis_sub !== 'string') throw new AuthenticationError(`the ${ASSERTION_HEADER} names no portcullis_sub`);
    const header = (name: string) => (typeof headers[name] === 'string' ? headers[name] : null);
    return {
      userId: typeof claims.sub === 'string' ? claims.sub : null,
      sub: claims.portcullis_sub,
      org: typeof claims.org === 'string' ? claims.org : null,
      ...(typeof claims.email === 'string' ? { email: claims.email } : {}),
      ...(typeof claims.email_verified === 'boolean' ? { emailVerified: claims.email_verified } : {}),
      ...(typeof claims.name === 'string' ? { name: claims.name } : {}),
      requestId: header('x-request-id'),
      decisionId: header('x-portcullis-decision'),
    };
  }
}
