// The instance id names this gateway's own decision chain (audit.instance_id). Without one in the
// config, an id is generated once and kept in the state folder, so a restart appends to the same
// chain; processes sharing the folder share the id (and take turns on the chain's lock).
import { randomBytes } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError } from '../../base/errors';
import { writeOnce } from '../../base/write-once';
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
  // Processes starting at once on one state folder all end up with the first one's id.
  await writeOnce(file, `gw-${randomBytes(6).toString('hex')}\n`);
  const id = (await readFile(file, 'utf8')).trim();
  if (!CHAIN_NAME.test(id) || id === LEGACY_CHAIN)
    throw new ConfigError(`${file}: "${id}" is not an instance id (see audit.instance_id); fix or delete the file`);
  return { id, file };
}
