// Builds the policy side of the gateway from `policy.*`: the active policy's manager (with
// signature verification for bundles) and, when `policy.shadow` is set, the shadow policy.
// Used by the composition root and by `portcullis explain`, which runs without a server.
import path from 'node:path';
import type { Logger } from 'pino';
import type { ShadowDisagreementStore } from '../audit/store/pg-shadow-disagreement-store';
import type { PortcullisConfig } from '../config/config-schema';
import { ConfigError } from '../base/errors';
import { BundleVerifier } from './bundle-signature';
import type { ToolchainOptions } from './opa-toolchain';
import { openPolicySource } from './policy-loader';
import { PolicyManager } from './policy-manager';
import { ShadowPolicy } from './shadow-policy';

export interface PolicySetupOptions {
  /** Compiled bundles of directory sources go below it (`policy/`, `policy-shadow/`). */
  buildDir: string;
  toolchain: ToolchainOptions;
  logger: Pick<Logger, 'info' | 'warn' | 'error'>;
  disagreements: ShadowDisagreementStore;
}

export interface Policies {
  policy: PolicyManager;
  shadow: ShadowPolicy | undefined;
  /** Starts hot reload (directories, bundle files) and polling (URLs). */
  watch(): void;
  close(): Promise<void>;
}

export async function setUpPolicies(config: PortcullisConfig['policy'], options: PolicySetupOptions): Promise<Policies> {
  const { logger } = options;
  const verifier = config.verification ? await BundleVerifier.create(config.verification) : undefined;
  const open = (source: string, key: string, folder: string) =>
    openPolicySource({
      source,
      key,
      entrypoint: config.entrypoint,
      buildDir: path.join(options.buildDir, folder),
      toolchain: options.toolchain,
      pollIntervalMs: config.poll_interval_s * 1000,
    });

  const source = await open(config.source, 'policy.source', 'policy');
  if (verifier && source.kind === 'directory') {
    throw new ConfigError(
      'policy.verification: signatures are checked on bundles, but policy.source is a directory; point it at a signed bundle or remove policy.verification',
    );
  }
  const policy = await PolicyManager.create({
    source,
    entrypoint: config.entrypoint,
    verifier,
    logger,
    thread: config.evaluation !== 'inline',
  });
  logger.info({ revision: policy.current.revision, source: policy.source }, 'policy loaded');

  let shadow: ShadowPolicy | undefined;
  if (config.shadow) {
    let manager: PolicyManager;
    try {
      const candidate = await open(config.shadow.source, 'policy.shadow.source', 'policy-shadow');
      manager = await PolicyManager.create({ source: candidate, entrypoint: config.entrypoint, verifier, logger, label: 'shadow policy' });
    } catch (error) {
      policy.close();
      throw error instanceof ConfigError ? error : new Error(`policy.shadow.source: ${(error as Error).message}`, { cause: error });
    }
    shadow = new ShadowPolicy(manager, options.disagreements, (error) =>
      logger.error({ err: error }, 'shadow policy disagreements could not be written yet; retrying'),
    );
    logger.info(
      { revision: manager.current.revision, source: manager.source },
      'shadow policy loaded: evaluated on every request, never enforced',
    );
  }

  return {
    policy,
    shadow,
    watch() {
      policy.watch();
      shadow?.manager.watch();
    },
    async close() {
      policy.close();
      await shadow?.close();
    },
  };
}
