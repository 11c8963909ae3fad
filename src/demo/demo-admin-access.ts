// How CLI commands reach a running demo's admin API without a configuration file: the demo
// writes its admin URL and token to `admin.json` in its state folder (0600: the token is a
// secret) and removes it when it stops; a file whose process is gone counts as absent.
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';

const FILE = 'admin.json';

export interface DemoAdminAccess {
  /** The admin port's base URL, e.g. http://127.0.0.1:9090. */
  url: string;
  token: string;
  /** The demo's process. */
  pid: number;
}

export async function writeDemoAdminAccess(stateDir: string, access: DemoAdminAccess): Promise<void> {
  const file = path.join(stateDir, FILE);
  // Renamed into place: a command reading it never sees half a file.
  const partial = `${file}.${process.pid}.tmp`;
  await writeFile(partial, JSON.stringify(access), { mode: 0o600 });
  await rename(partial, file);
}

export async function removeDemoAdminAccess(stateDir: string): Promise<void> {
  await rm(path.join(stateDir, FILE), { force: true });
}

/** The running demo's admin access, or undefined when no demo runs on `stateDir`. */
export async function readDemoAdminAccess(stateDir: string): Promise<DemoAdminAccess | undefined> {
  let text: string;
  try {
    text = await readFile(path.join(stateDir, FILE), 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  let access: DemoAdminAccess;
  try {
    access = JSON.parse(text) as DemoAdminAccess;
  } catch {
    throw new Error(`${path.join(stateDir, FILE)} is not JSON: remove it and start the demo again`);
  }
  return isRunning(access.pid) ? access : undefined;
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it runs, as another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
