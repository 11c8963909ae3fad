// The instance id's default: generated once into the state folder, the same for every process
// that shares the folder, and a configured one used as it is.
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ConfigError } from '../../base/errors';
import { resolveInstanceId } from './instance-id';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'portcullis-instance-'));
});
afterEach(async () => rm(dir, { recursive: true, force: true }));

describe('resolveInstanceId', () => {
  it('generates an id into the state folder once and reads it back after', async () => {
    const stateDir = path.join(dir, 'state');
    const first = await resolveInstanceId(undefined, stateDir);
    expect(first).toEqual({ id: expect.stringMatching(/^gw-[0-9a-f]{12}$/) as string, file: path.join(stateDir, 'instance-id') });
    expect((await readFile(first.file!, 'utf8')).trim()).toBe(first.id);
    expect(await resolveInstanceId(undefined, stateDir)).toEqual(first);
  });

  it('gives processes starting at once on one folder the same id, and leaves nothing else there', async () => {
    // Each start reads the file right after trying to create it (the race itself: src/base/write-once.test.ts).
    for (let attempt = 0; attempt < 10; attempt += 1) {
      const stateDir = path.join(dir, `state-${attempt}`);
      const ids = await Promise.all(Array.from({ length: 16 }, () => resolveInstanceId(undefined, stateDir)));
      expect(new Set(ids.map((resolved) => resolved.id)).size).toBe(1);
      expect(await readdir(stateDir)).toEqual(['instance-id']);
    }
  });

  it('uses a configured id as it is, and writes nothing', async () => {
    expect(await resolveInstanceId('gw-eu-1', dir)).toEqual({ id: 'gw-eu-1' });
    await expect(readFile(path.join(dir, 'instance-id'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('refuses a kept id that is not one, naming the file', async () => {
    await writeFile(path.join(dir, 'instance-id'), 'legacy\n');
    await expect(resolveInstanceId(undefined, dir)).rejects.toThrow(ConfigError);
    await writeFile(path.join(dir, 'instance-id'), 'two words\n');
    await expect(resolveInstanceId(undefined, dir)).rejects.toThrow(
      /instance-id: "two words" is not an instance id \(see audit\.instance_id\)/,
    );
  });
});
