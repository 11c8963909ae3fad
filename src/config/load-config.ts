// Reads portcullis.yaml once at start-up: ${VAR} interpolation from the environment,
// relative paths resolved against the file's folder, one schema, a frozen result.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { ConfigError } from '../base/errors';
import { configSchema, type PortcullisConfig } from './config-schema';

export type Environment = Readonly<Record<string, string | undefined>>;

const VARIABLE = /\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

/**
 * Replaces `${VAR}` in every string of the document. A value that is exactly one unset
 * `${VAR}` becomes absent (so `url: ${DATABASE_URL}` falls back to the default); an unset
 * variable inside a longer string is an error.
 */
export function interpolate(value: unknown, env: Environment, keyPath: string[] = []): unknown {
  if (typeof value === 'string') {
    const whole = /^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$/.exec(value);
    if (whole && env[whole[1]!] === undefined) return undefined;
    return value.replace(VARIABLE, (_, name: string) => {
      const replacement = env[name];
      if (replacement === undefined) {
        throw new ConfigError(`${keyPath.join('.') || '(root)'}: environment variable ${name} is not set`);
      }
      return replacement;
    });
  }
  if (Array.isArray(value)) return value.map((item, index) => interpolate(item, env, [...keyPath, String(index)]));
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value).map(([key, item]) => [key, interpolate(item, env, [...keyPath, key])] as const);
    return Object.fromEntries(entries.filter(([, item]) => item !== undefined));
  }
  return value;
}

/** Validates an already-parsed document; `baseDir` anchors relative paths. */
export function parseConfig(document: unknown, env: Environment, baseDir: string): PortcullisConfig {
  const result = configSchema.safeParse(interpolate(document ?? {}, env));
  if (!result.success) {
    const lines = result.error.issues.map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`);
    throw new ConfigError(`invalid configuration: ${lines.join('; ')}`);
  }
  const config = result.data;
  const resolve = (file: string) => (file.startsWith('http://') || file.startsWith('https://') ? file : path.resolve(baseDir, file));
  config.policy.source = resolve(config.policy.source);
  if (config.policy.shadow) config.policy.shadow.source = resolve(config.policy.shadow.source);
  if (config.policy.verification) config.policy.verification.public_key_file = resolve(config.policy.verification.public_key_file);
  if (config.auth.jwks_file) config.auth.jwks_file = resolve(config.auth.jwks_file);
  if (config.assertion.signing_key_file) config.assertion.signing_key_file = resolve(config.assertion.signing_key_file);
  if (config.audit.spool_dir) config.audit.spool_dir = resolve(config.audit.spool_dir);
  if (config.audit.checkpoint_key_file) config.audit.checkpoint_key_file = resolve(config.audit.checkpoint_key_file);
  if (config.audit.export?.kind === 'file') config.audit.export.path = resolve(config.audit.export.path);
  return deepFreeze(config);
}

export function loadConfigFile(file: string, env: Environment): PortcullisConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError(`cannot read configuration file ${file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
  }
  let document: unknown;
  try {
    document = parseYaml(text);
  } catch (error) {
    throw new ConfigError(`${file} is not valid YAML: ${(error as Error).message.split('\n')[0]}`);
  }
  return parseConfig(document, env, path.dirname(path.resolve(file)));
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const item of Object.values(value)) deepFreeze(item);
  }
  return value;
}
