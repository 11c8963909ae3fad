// Authentication stage contract: an Authorization header in, a verified principal out,
// or an AuthenticationError (R1). Nothing here knows about organizations.

export interface Principal {
  /** The JWT `sub`, which maps to `users.subject`. */
  sub: string;
  /** Seconds since the epoch, from `exp` (a token without one is refused). */
  expiresAt: number;
  claims: Readonly<Record<string, unknown>>;
  /** OIDC profile claims, when the token carries them with the standard types. */
  email?: string;
  emailVerified?: boolean;
  name?: string;
}

/**
 * The OIDC standard profile claims of a verified token (`email`, `email_verified`, `name`),
 * each only when it has its standard type: a claim that is not a boolean `true` never counts
 * as a verified address.
 */
export function profileClaims(claims: Readonly<Record<string, unknown>>): Pick<Principal, 'email' | 'emailVerified' | 'name'> {
  const profile: Pick<Principal, 'email' | 'emailVerified' | 'name'> = {};
  if (typeof claims.email === 'string' && claims.email !== '') profile.email = claims.email;
  if (typeof claims.email_verified === 'boolean') profile.emailVerified = claims.email_verified;
  if (typeof claims.name === 'string' && claims.name !== '') profile.name = claims.name;
  return profile;
}

export interface Authenticator {
  /** Throws AuthenticationError for a missing, malformed or unverifiable bearer token. */
  authenticate(authorization: string | undefined): Promise<Principal>;
}
