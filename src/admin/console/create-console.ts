// Builds the console from what the composition root already has: the admin config (token,
// session settings), the admin pool, the policy, the explainer, the audit backlog and caches.
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import type { Knex } from 'knex';
import type { Router } from 'express';
import type { AuditBacklog } from '../../audit/audit-trail';
import { PgDecisionQueryStore } from '../../audit/store/pg-decision-query-store';
import { PgShadowDisagreementStore } from '../../audit/store/pg-shadow-disagreement-store';
import { loadCandidatePolicy } from '../../authz/candidate-policy';
import type { ToolchainOptions } from '../../authz/opa-toolchain';
import type { PolicyExplainer } from '../../authz/policy-explainer';
import type { PolicyManager } from '../../authz/policy-manager';
import type { ShadowPolicy } from '../../authz/shadow-policy';
import { InputError } from '../../base/errors';
import type { PortcullisConfig } from '../../config/config-schema';
import type { ConsoleRoute } from './access-page';
import { createConsoleRouter } from './console-router';
import { SessionSigner } from './console-session';
import { ConsoleStore } from './console-store';

export interface ConsoleSetup {
  config: PortcullisConfig['admin'];
  db: Knex;
  policy: PolicyManager;
  shadow: ShadowPolicy | undefined;
  explainer: Pick<PolicyExplainer, 'explain'>;
  backlog: () => AuditBacklog;
  caches: Record<string, { cacheStats(): { hits: number; misses: number; size: number } }>;
  routes: readonly ConsoleRoute[];
  entrypoint: string;
  toolchain: ToolchainOptions;
}

export function createConsole(setup: ConsoleSetup): Router {
  const { console: settings } = setup.config;
  return createConsoleRouter({
    token: setup.config.token,
    sessions: new SessionSigner({
      // A per-process key signs out everyone at a restart; a configured one survives it.
      secret: settings.session_secret ? Buffer.from(settings.session_secret, 'utf8') : randomBytes(32),
      ttlMs: settings.session_ttl_s * 1000,
      secureCookie: settings.secure_cookie,
    }),
    store: new ConsoleStore(setup.db),
    decisions: new PgDecisionQueryStore(setup.db),
    policy: setup.policy,
    shadow: setup.shadow,
    explainer: setup.explainer,
    disagreements: new PgShadowDisagreementStore(setup.db),
    backlog: setup.backlog,
    caches: setup.caches,
    routes: setup.routes,
    entrypoint: setup.entrypoint,
    loadCandidate: async (source) => {
      // The console has no working folder: a relative path would mean the server's.
      if (!path.isAbsolute(source)) throw new InputError(`candidate: ${JSON.stringify(source)} is not an absolute path on the server`);
      return loadCandidatePolicy(source, { entrypoint: setup.entrypoint, toolchain: setup.toolchain, name: 'candidate' });
    },
  });
}
