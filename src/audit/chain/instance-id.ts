// The instance id names this gateway's own decision chain (audit.instance_id). Without one in the
// config, an id is generated once and kept in the state folder, so a restart appends to the same
// chain; processes sharing the folder share the id (and take turns on the chain's lock).
import { randomBytes } from 'node:crypto';
import { link, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
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
  await keepFirst(file, `gw-${randomBytes(6).toString('hex')}\n`);
  const id = (await readFile(file, 'utf8')).trim();
  if (!CHAIN_NAME.test(id) || id === LEGACY_CHAIN)
    throw new ConfigError(`${file}: "${id}" is not an instance id (see audit.instance_id); fix or delete the file`);
  return { id, file };
}

/**
 * Writes `text` to `file` unless it exists, so that processes starting at once on one state
 * folder all end up with the first one's id. The text is written to a file of this process's
 * own and then linked into place (`link` fails when the name exists): the file appears whole. A
 * file opened with `wx` and then written was read empty by a process starting beside it, which
 * then refused to start (a fresh-clone run saw it), and a crash in between would have left it
 * empty for good.
 */
async function keepFirst(file: string, text: string): Promise<void> {
  const own = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await writeFile(own, text, { flag: 'wx' });
    await link(own, file).catch(async (error: NodeJS.ErrnoException) => {
      // A file system without hard links: created exclusively and written, as before.
      if (error.code === 'EPERM' || error.code === 'ENOTSUP' || error.code === 'EOPNOTSUPP' || error.code === 'ENOSYS')
        await writeFile(file, text, { flag: 'wx' });
      else throw error;
    });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  } finally {
    await rm(own, { force: true });
  }
}
