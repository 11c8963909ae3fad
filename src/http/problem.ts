// The one place where outcomes become RFC 9457 problem+json: domain errors thrown by any
// stage, and policy denials. Bodies never echo secrets (tokens, cookies).
import { STATUS_CODES, type ServerResponse } from 'node:http';
import { AuthenticationError, MethodNotAllowedError, PortcullisError } from '../base/errors';

export const PROBLEM_TYPE_BASE = 'urn:portcullis:problem:';

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  decision_id?: string;
  request_id: string;
  /** The decision's stable code and its params (README "Decision codes"), when it has one. */
  code?: string;
  params?: Record<string, unknown>;
}

export interface ProblemContext {
  requestId: string;
  decisionId?: string | undefined;
  /** The recorded decision's code, for an error the gateway port answers (`unauthenticated`). */
  code?: string | undefined;
}

/**
 * A policy denial: `reasons` become the detail, the code and params are passed on; the
 * policy's status is kept when it is an error status.
 */
export function denialProblem(decision: Denial, context: ProblemContext): Problem {
  const { status, reasons, code, params } = decision;
  const safeStatus = Number.isInteger(status) && status >= 400 && status <= 599 ? status : 403;
  return {
    type: `${PROBLEM_TYPE_BASE}${safeStatus === 409 ? 'conflict' : safeStatus === 404 ? 'not-found' : 'denied'}`,
    title: STATUS_CODES[safeStatus] ?? 'Forbidden',
    status: safeStatus,
    detail: reasons.length > 0 ? reasons.join('; ') : 'the policy denied this request',
    ...(context.decisionId ? { decision_id: context.decisionId } : {}),
    request_id: context.requestId,
    ...(code !== undefined ? { code, params: params ?? {} } : {}),
  };
}

/** What a denial answer needs of the policy's decision (PolicyDecision's shape). */
export interface Denial {
  status: number;
  reasons: readonly string[];
  code?: string | undefined;
  params?: Record<string, unknown> | undefined;
}

/** Any thrown value. Unknown errors become an opaque 500: fail closed, reveal nothing. */
export function errorProblem(error: unknown, context: ProblemContext): Problem {
  const known = error instanceof PortcullisError;
  const status = known ? error.status : 500;
  return {
    type: `${PROBLEM_TYPE_BASE}${known ? error.code : 'internal'}`,
    title: known ? error.title : 'Internal Server Error',
    status,
    detail: known ? error.message : 'the gateway failed to process this request; it was not forwarded',
    ...(context.decisionId ? { decision_id: context.decisionId } : {}),
    request_id: context.requestId,
    ...(context.code !== undefined ? { code: context.code, params: {} } : {}),
  };
}

export function sendProblem(res: ServerResponse, problem: Problem, error?: unknown): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify(problem);
  res.statusCode = problem.status;
  res.setHeader('content-type', 'application/problem+json');
  res.setHeader('content-length', Buffer.byteLength(body));
  res.setHeader('cache-control', 'no-store');
  if (error instanceof MethodNotAllowedError) res.setHeader('allow', error.allow.join(', '));
  if (problem.status === 401) {
    const bearerError = error instanceof AuthenticationError ? error.bearerError : 'invalid_token';
    res.setHeader(
      'www-authenticate',
      bearerError
        ? `Bearer realm="portcullis", error="${bearerError}", error_description="${quote(problem.detail)}"`
        : 'Bearer realm="portcullis"',
    );
  }
  res.end(body);
}

function quote(text: string): string {
  return text.replace(/["\\\r\n]/g, ' ');
}
