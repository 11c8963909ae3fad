// Authentication stage contract: an Authorization header in, a verified principal out,
// or an AuthenticationError (R1). Nothing here knows about organizations.

export interface Principal {
  /** The JWT `sub`, which maps to `users.subject`. */
  sub: string;
  /** Seconds since the epoch, from `exp` (a token without one is refused). */
  expiresAt: number;
  claims: Readonly<Record<string, unknown>>;
}

export interface Authenticator {
  /** Throws AuthenticationError for a missing, malformed or unverifiable bearer token. */
  authenticate(authorization: string | undefined): Promise<Principal>;
}
