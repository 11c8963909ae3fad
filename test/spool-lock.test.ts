// The spool lock between real processes (the built module in a second node process): while
// one holds the spool the other is refused, however long it waits (the holder's heartbeat keeps
// the lock fresh); once the holder crashed, a process in the same PID namespace takes it over
// at once (one in another container waits for the stale age: decision-spool.test.ts).
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { DecisionSpool } from '../src/audit/recording/decision-spool';
import { projectRoot } from '../src/project-root';
import { requireBuild } from './support/cli-process';
import { waitFor } from './support/wait-for';

/** Holds the spool in argv[1] with a 1 s stale age (so its heartbeat beats every 333 ms). */
const HOLDER = `
  const { DecisionSpool } = require(${JSON.stringify(path.join(projectRoot, 'dist', 'audit', 'recording', 'decision-spool.js'))});
  DecisionSpool.open(process.argv[1], { staleMs: 1000 }).then(() => { console.log('locked'); setInterval(() => undefined, 1000); });
`;

let dir: string;
let spool: DecisionSpool | undefined;

beforeAll(() => requireBuild());
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'portcullis-spool-lock-'));
});
afterEach(async () => {
  await spool?.close();
  spool = undefined;
  await rm(dir, { recursive: true, force: true });
});

describe('the spool lock across processes', () => {
  it('refuses while another process holds it (its heartbeat outlives the stale age), and takes it over at once when that process crashed', async () => {
    const holder = spawn(process.execPath, ['-e', HOLDER, dir]);
    let output = '';
    holder.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    holder.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    try {
      await waitFor(() => output.includes('locked'), { timeoutMs: 15_000, what: `the other process to take the lock (${output})` });
      await expect(DecisionSpool.open(dir, { staleMs: 1_000 })).rejects.toThrow(
        /used by another running Portcullis, instance [0-9a-f-]{36}/,
      );
      // Longer than the stale age: only the holder's heartbeat keeps the lock fresh.
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      await expect(DecisionSpool.open(dir, { staleMs: 1_000 })).rejects.toThrow(/used by another running Portcullis/);

      holder.kill('SIGKILL'); // crashed: its lock file stays behind, fresh, but its pid is gone
      await new Promise((resolve) => holder.once('exit', resolve));
      spool = await DecisionSpool.open(dir, { staleMs: 60_000 });
      expect(JSON.parse(await readFile(path.join(dir, 'spool.lock'), 'utf8'))).toMatchObject({ pid: process.pid });
    } finally {
      holder.kill('SIGKILL');
    }
  }, 30_000);
});
