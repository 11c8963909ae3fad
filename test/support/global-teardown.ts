import { rm } from 'node:fs/promises';

export default async function globalTeardown(): Promise<void> {
  await globalThis.__PORTCULLIS_EMBEDDED__?.stop();
  const scratch = process.env.PORTCULLIS_TEST_SCRATCH;
  if (scratch) await rm(scratch, { recursive: true, force: true });
}
