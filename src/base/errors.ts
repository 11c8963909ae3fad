// Domain errors: every stage throws these, and one place (src/http/problem.ts) turns them into
// RFC 9457 problem+json. Library errors are wrapped where they enter the code.

export abstract class PortcullisError extends Error {
  abstract readonly status: number;
  abstract readonly title: string;
  /** Short machine-readable slug; becomes the problem `type` URI suffix. */
  abstract readonly code: string;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** R1: no token, or one that does not verify. Answered 401 with `WWW-Authenticate: Bearer`. */
export class AuthenticationError extends PortcullisError {
  readonly status = 401;
  readonly title = 'Unauthorized';
  readonly code = 'unauthenticated';
  constructor(
    message: string,
    readonly bearerError: 'invalid_request' | 'invalid_token' | null = 'invalid_token',
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export class ForbiddenError extends PortcullisError {
  readonly status = 403;
  readonly title = 'Forbidden';
  readonly code = 'forbidden';
}

export class NotFoundError extends PortcullisError {
  readonly status = 404;
  readonly title = 'Not Found';
  readonly code = 'not-found';
}

/** A resource that exists, asked with a method it does not take. Answered 405 with `Allow`. */
export class MethodNotAllowedError extends PortcullisError {
  readonly status = 405;
  readonly title = 'Method Not Allowed';
  readonly code = 'method-not-allowed';
  constructor(
    message: string,
    /** The methods the resource takes, for the `Allow` header. */
    readonly allow: readonly string[],
  ) {
    super(message);
  }
}

/** A request the gateway refuses to interpret (bad path encoding, duplicate headers, …). */
export class InputError extends PortcullisError {
  readonly title: string;
  readonly code: string;
  constructor(
    message: string,
    readonly status: InputStatus = 400,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    [this.title, this.code] = INPUT_STATUSES[status];
  }
}

// The directory service (an upstream, not the gateway) answers the rest of the 4xx family.
const INPUT_STATUSES = {
  400: ['Bad Request', 'bad-request'],
  412: ['Precondition Failed', 'precondition-failed'],
  413: ['Content Too Large', 'bad-request'],
  415: ['Unsupported Media Type', 'unsupported-media-type'],
  422: ['Unprocessable Content', 'unprocessable'],
  431: ['Request Header Fields Too Large', 'bad-request'],
} as const;
type InputStatus = keyof typeof INPUT_STATUSES;

/** The request conflicts with the state of the resource (a duplicate, the last admin, a resource in use). */
export class ConflictError extends PortcullisError {
  readonly status = 409;
  readonly title = 'Conflict';
  readonly code = 'conflict';
}

/** A feature that needs a setting nobody configured; the message names the setting. */
export class NotConfiguredError extends PortcullisError {
  readonly status = 501;
  readonly title = 'Not Implemented';
  readonly code = 'not-configured';
}

/** The upstream could not be reached (502) or did not answer in time (504). */
export class UpstreamError extends PortcullisError {
  readonly title: string;
  readonly code = 'upstream';
  constructor(
    message: string,
    readonly status: 502 | 504,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.title = status === 504 ? 'Gateway Timeout' : 'Bad Gateway';
  }
}

/** The policy could not be evaluated or gave no usable answer: always a deny. */
export class PolicyError extends PortcullisError {
  readonly status = 500;
  readonly title = 'Policy Evaluation Failed';
  readonly code = 'policy-error';
}

/** A policy that failed to compile, load or verify on reload; the last good one keeps serving. */
export class PolicyRejectedError extends PortcullisError {
  readonly status = 422;
  readonly title = 'Unprocessable Content';
  readonly code = 'policy-rejected';
}

/** A dependency the decision needs (PostgreSQL, the JWKS endpoint) is unavailable. */
export class DependencyError extends PortcullisError {
  readonly status = 503;
  readonly title = 'Service Unavailable';
  readonly code = 'dependency-unavailable';
}

/** Configuration that cannot be used; the message names the key path. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** Wraps anything thrown (opa-wasm throws strings) into an Error with a readable message. */
export function toError(thrown: unknown): Error {
  if (thrown instanceof Error) return thrown;
  return new Error(typeof thrown === 'string' ? thrown : JSON.stringify(thrown));
}
