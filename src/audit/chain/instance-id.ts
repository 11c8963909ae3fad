// The instance id names this gateway's own decision chain (audit.instance_id). Without one in the
// config, an id is generated once and kept in the state folder, so a restart appends to the same
// chain; processes sharing the folder share the id (and take turns on the chain's lock).
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError } from '../../base/errors';
import { CHAIN_NAME, LEGACY_CHAIN } from './decision-chain';

export interface InstanceId {
  id: string;
  /** Where the generated id is kept; undefined when the config named it. */
  file?: string;
}

export async function resolveInstanceId(configured: string | undefined, stateDir: string): Promise<InstanceId> {
  if (configured !== undefined) return { id: configured };
  const file = path.join(stateDir, 'instance-id');
  await mkdir(stateDir, { recursive: true });
  // wx: two processes starting at once on one state folder must end up with the same id.
  await writeFile(file, `gw-${randomBytes(6).toString('hex')}\n`, { flag: 'wx' }).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'EEXIST') throw error;
  });
  const id = (await readFile(file, 'utf8')).trim();
  if (!CHAIN_NAME.test(id) || id === LEGACY_CHAIN)
    throw new ConfigError(`${file}: "${id}" is not an instance id (see audit.instance_id); fix or delete the file`);
  return { id, file };
}
