// A candidate policy for the console's replay: a directory of .rego compiled with the pinned
// opa into a scratch bundle, or a bundle .tar.gz read as is (what `decisions replay --policy`
// accepts). Paths are on the server and must be absolute: the console has no working folder.
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { buildWasmBundle, resolveOpa, type ToolchainOptions } from '../../authz/opa-toolchain';
import { readBundle } from '../../authz/policy-bundle';
import type { PolicyEngine } from '../../authz/policy-engine';
import { WasmPolicyEngine } from '../../authz/wasm-policy-engine';
import { InputError } from '../../base/errors';

export async function loadCandidatePolicy(source: string, entrypoint: string, toolchain: ToolchainOptions): Promise<PolicyEngine> {
  if (!path.isAbsolute(source)) throw new InputError(`candidate: ${JSON.stringify(source)} is not an absolute path on the server`);
  const info = await stat(source).catch(() => undefined);
  if (!info) throw new InputError(`candidate: ${source} does not exist`);
  let bytes: Buffer;
  if (info.isDirectory()) {
    const scratch = await mkdtemp(path.join(os.tmpdir(), 'portcullis-console-replay-'));
    try {
      const { output } = await buildWasmBundle({ opa: await resolveOpa(toolchain), source, entrypoints: [entrypoint], output: path.join(scratch, 'bundle.tar.gz') });
      bytes = await readFile(output);
    } catch (error) {
      throw new InputError(`candidate: ${(error as Error).message}`, 400, { cause: error });
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  } else {
    bytes = await readFile(source);
  }
  try {
    return await WasmPolicyEngine.create(await readBundle(bytes), entrypoint);
  } catch (error) {
    throw new InputError(`candidate: ${(error as Error).message}`, 400, { cause: error });
  }
}
