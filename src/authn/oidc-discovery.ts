// OpenID Connect Discovery 1.0 (§4): the provider's metadata at
// `<issuer>/.well-known/openid-configuration`, trusted only when it names the configured
// issuer exactly, so the key set comes from the provider the tokens are checked against.
import { isSecureFetchUrl } from '../config/config-schema';

/** The issuer without a terminating `/`, then the well-known path (Discovery §4). */
export function discoveryUrl(issuer: string): URL {
  return new URL(`${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`);
}

/** The provider's `jwks_uri`; throws an Error whose message says what is wrong, for `/readyz` and the log. */
export async function discoverJwksUri(issuer: string, timeoutMs: number): Promise<URL> {
  const url = discoveryUrl(issuer);
  const where = `auth.discovery: ${url.href}`;
  let text: string;
  try {
    // No redirects: the metadata must come from the issuer's own origin.
    const response = await fetch(url, {
      redirect: 'error',
      headers: { accept: 'application/json' },
      signal: AbortSignal.timeout(timeoutMs),
    });
    if (!response.ok) throw new Error(`answered HTTP ${response.status}`);
    text = await response.text();
  } catch (error) {
    throw new Error(`${where}: ${fetchFailure(error, timeoutMs)}`);
  }
  let metadata: { issuer?: unknown; jwks_uri?: unknown } | null;
  try {
    metadata = JSON.parse(text) as typeof metadata;
  } catch {
    throw new Error(`${where}: not JSON`);
  }
  if (metadata?.issuer !== issuer) {
    throw new Error(`${where}: its issuer ${JSON.stringify(metadata?.issuer)} does not equal auth.issuer ${JSON.stringify(issuer)}`);
  }
  if (typeof metadata.jwks_uri !== 'string') throw new Error(`${where}: has no jwks_uri`);
  if (!isSecureFetchUrl(metadata.jwks_uri))
    throw new Error(`${where}: jwks_uri must be an https URL (http only on loopback): ${metadata.jwks_uri}`);
  return new URL(metadata.jwks_uri);
}

/** fetch() says "fetch failed" and hides the reason in `cause` (duck-typed: Node's errors may come from another realm). */
function fetchFailure(error: unknown, timeoutMs: number): string {
  const { name, message, cause } = (error ?? {}) as { name?: unknown; message?: unknown; cause?: { message?: unknown } };
  if (name === 'TimeoutError' || name === 'AbortError') return `no answer within ${timeoutMs} ms`;
  if (typeof cause?.message === 'string') return cause.message;
  return typeof message === 'string' ? message : String(error);
}
