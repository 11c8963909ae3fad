// Turns `policy.source` into a running engine: a directory of Rego is compiled with the
// pinned OPA toolchain; a .tar.gz bundle (as `portcullis policy build` writes) is read as is.
import { stat, readFile } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError } from '../http/errors';
import { buildWasmBundle, resolveOpa, type ToolchainOptions } from './opa-toolchain';
import { readBundle } from './policy-bundle';
import type { PolicyEngine } from './policy-engine';
import { WasmPolicyEngine } from './wasm-policy-engine';

export interface LoadedPolicy {
  engine: PolicyEngine;
  source: string;
  loadedAt: Date;
}

export interface PolicyLoadOptions {
  source: string;
  entrypoint: string;
  /** Where a compiled directory's bundle is written. */
  buildDir: string;
  toolchain: ToolchainOptions;
}

export async function loadPolicy(options: PolicyLoadOptions): Promise<LoadedPolicy> {
  const { source, entrypoint, toolchain } = options;
  if (/^https?:\/\//.test(source)) {
    throw new ConfigError('policy.source: remote bundle URLs are not supported by this version; use a directory or a .tar.gz path');
  }
  const info = await stat(source).catch(() => undefined);
  if (!info) throw new ConfigError(`policy.source: ${source} does not exist`);
  let bundleFile = source;
  if (info.isDirectory()) {
    const started = Date.now();
    toolchain.log?.(`compiling policies in ${source}…`);
    const opa = await resolveOpa(toolchain);
    ({ output: bundleFile } = await buildWasmBundle({ opa, source, entrypoints: [entrypoint], output: path.join(options.buildDir, 'bundle.tar.gz') }));
    toolchain.log?.(`compiled policies in ${Date.now() - started} ms`);
  } else if (!/\.tar\.gz$|\.tgz$/.test(source)) {
    throw new ConfigError(`policy.source: ${source} is neither a directory nor a .tar.gz bundle`);
  }
  const bundle = await readBundle(await readFile(bundleFile));
  return { engine: await WasmPolicyEngine.create(bundle, entrypoint), source, loadedAt: new Date() };
}
