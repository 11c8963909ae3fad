// A file that processes starting at once may all try to create (a generated id or key in the
// state folder): the first one's content is kept, and no process ever reads it half written.
import { randomBytes } from 'node:crypto';
import { link, rm, writeFile } from 'node:fs/promises';

/** Errors of a file system without hard links: there the file is created exclusively and then written. */
const NO_LINKS = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS']);

/**
 * Writes `data` to `file` unless it exists. The data goes to a file of this process's own
 * first, which is then linked into place (`link` fails when the name exists), so the file
 * appears whole: a file opened with `wx` and then written was read empty by a process starting
 * beside it (a fresh-clone run saw it), and a crash in between would have left it empty for good.
 * Returns whether this call wrote it.
 */
export async function writeOnce(file: string, data: string, mode = 0o644): Promise<boolean> {
  const own = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await writeFile(own, data, { flag: 'wx', mode });
    await link(own, file).catch(async (error: NodeJS.ErrnoException) => {
      if (!NO_LINKS.has(error.code ?? '')) throw error;
      await writeFile(file, data, { flag: 'wx', mode });
    });
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    return false;
  } finally {
    await rm(own, { force: true });
  }
}
