// A file many processes may try to create at once: the first one's content, read whole by all.
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { writeOnce } from './write-once';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'write-once-'));
});
afterEach(async () => rm(dir, { recursive: true, force: true }));

describe('writeOnce', () => {
  it('keeps the first content among writers at once, and nobody reads it half written', async () => {
    // Each writer reads the file right after its attempt, as a starting gateway does: with the file
    // created exclusively and then written, one read it empty in one run of this test out of three or four.
    for (let attempt = 0; attempt < 50; attempt += 1) {
      const file = path.join(dir, `id-${attempt}`);
      const read = await Promise.all(
        Array.from({ length: 64 }, async (_, writer) => {
          await writeOnce(file, `writer-${writer}\n`);
          return readFile(file, 'utf8');
        }),
      );
      expect(new Set(read).size).toBe(1);
      expect(read[0]).toMatch(/^writer-\d+\n$/);
    }
    // Each writer's own file is gone.
    expect((await readdir(dir)).filter((name) => !/^id-\d+$/.test(name))).toEqual([]);
  });

  it('says whether it wrote, leaves an existing file as it is, and gives a new one the mode asked', async () => {
    const file = path.join(dir, 'key.pem');
    expect(await writeOnce(file, 'first', 0o600)).toBe(true);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect(await writeOnce(file, 'second', 0o600)).toBe(false);
    expect(await readFile(file, 'utf8')).toBe('first');
    await writeFile(path.join(dir, 'other'), 'mine');
    expect(await writeOnce(path.join(dir, 'other'), 'theirs')).toBe(false);
    expect(await readFile(path.join(dir, 'other'), 'utf8')).toBe('mine');
    expect((await readdir(dir)).sort()).toEqual(['key.pem', 'other']);
  });

  it('reports what is not a lost race', async () => {
    await expect(writeOnce(path.join(dir, 'missing', 'file'), 'x')).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
