// A candidate policy to judge recorded decisions with (`decisions replay --policy`, the
// console's replay): a directory of .rego compiled with the pinned opa into a scratch bundle,
// or a bundle .tar.gz read as is. Every failure is an input error naming the option it came from.
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { InputError } from '../base/errors';
import { buildWasmBundle, resolveOpa, type ToolchainOptions } from './opa-toolchain';
import { readBundle } from './policy-bundle';
import type { PolicyEngine } from './policy-engine';
import { WasmPolicyEngine } from './wasm-policy-engine';

/** `name` prefixes every error: the flag or field the caller took `source` from. */
export async function loadCandidatePolicy(
  source: string,
  options: { entrypoint: string; toolchain: ToolchainOptions; name: string },
): Promise<PolicyEngine> {
  const { entrypoint, toolchain, name } = options;
  const info = await stat(source).catch(() => undefined);
  if (!info) throw new InputError(`${name}: ${source} does not exist`);
  const refused = (error: unknown) => new InputError(`${name}: ${(error as Error).message}`, 400, { cause: error });
  let bytes: Buffer;
  if (info.isDirectory()) {
    const scratch = await mkdtemp(path.join(os.tmpdir(), 'portcullis-candidate-'));
    try {
      const { output } = await buildWasmBundle({
        opa: await resolveOpa(toolchain),
        source,
        entrypoints: [entrypoint],
        output: path.join(scratch, 'bundle.tar.gz'),
      });
      bytes = await readFile(output);
    } catch (error) {
      throw refused(error);
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  } else {
    bytes = await readFile(source);
  }
  try {
    return await WasmPolicyEngine.create(await readBundle(bytes), entrypoint);
  } catch (error) {
    throw refused(error);
  }
}
