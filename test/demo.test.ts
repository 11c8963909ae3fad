// The zero-configuration start a newcomer meets first: `portcullis demo` (what `npm start`
// runs without a config file) prints curl commands that must do what they say, stops
// cleanly on Ctrl-C, and starts again on its kept data.
import { execFile, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { BIN, spawnCli } from './support/cli-process';

const run = promisify(execFile);

interface RunningDemo {
  child: ChildProcessWithoutNullStreams;
  output: () => string;
}

function startDemo(stateDir: string): Promise<RunningDemo> {
  const child = spawnCli(['demo', '--state-dir', stateDir, '--port', '0', '--admin-port', '0']);
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`demo not ready after 60 s:\n${output}`)), 60_000);
    child.stdout.on('data', () => {
      if (output.includes('Press Ctrl-C to stop everything.')) {
        clearTimeout(timer);
        resolve({ child, output: () => output });
      }
    });
    child.on('close', (code) => reject(new Error(`demo exited with ${code}:\n${output}`)));
  });
}

async function stopDemo(demo: RunningDemo): Promise<number | null> {
  const exited = new Promise<number | null>((resolve) => demo.child.on('close', resolve));
  demo.child.kill('SIGINT');
  return exited;
}

/** Runs a printed command exactly as a person would paste it, after the printed exports. */
async function paste(printed: string, command: string): Promise<string> {
  const exports = printed.split('\n').filter((line) => line.startsWith('export ')).join('\n');
  const { stdout } = await run('bash', ['-c', `${exports}\n${command}`]);
  return stdout;
}

let stateDir: string;
beforeAll(async () => {
  stateDir = await mkdtemp(path.join(os.tmpdir(), 'portcullis-demo-'));
});
afterAll(async () => {
  await rm(stateDir, { recursive: true, force: true });
});

async function postgresProcesses(): Promise<string> {
  try {
    return (await run('pgrep', ['-af', path.join(stateDir, 'pgdata')])).stdout;
  } catch {
    return ''; // pgrep exits 1 when nothing matches
  }
}

describe('portcullis demo', () => {
  it('prints curl commands that each do what their comment says, and stops cleanly on Ctrl-C', async () => {
    const demo = await startDemo(stateDir);
    try {
      const printed = demo.output();
      expect(printed).toMatch(/demo data loaded/);
      const commands = printed.split('\n').filter((line) => line.startsWith('curl '));
      expect(commands).toHaveLength(8);
      const statuses = [];
      for (const command of commands.slice(0, 7)) statuses.push(Number(/^HTTP\/1\.1 (\d{3})/.exec(await paste(printed, command))?.[1]));
      // allowed read, 409 on acme, cross-org 403, team-granted create, org creation, own profile, no token
      expect(statuses).toEqual([200, 409, 403, 200, 200, 200, 401]);
      expect(await paste(printed, commands[1]!)).toMatch(/still has 2 projects \(api, web\)/);
      expect(await paste(printed, commands[0]!)).toMatch(/"x-portcullis-user": "[0-9a-f-]{36}"/);
      expect(JSON.parse(await paste(printed, commands[7]!))).toMatchObject({ revision: expect.stringMatching(/^sha256:/) });
    } finally {
      expect(await stopDemo(demo)).toBe(0);
    }
    expect(demo.output()).toMatch(/stopped/);
    expect(await postgresProcesses()).toBe('');
  }, 90_000);

  it('starts again on the kept data without reloading it, and mints tokens on demand', async () => {
    const demo = await startDemo(stateDir);
    try {
      expect(demo.output()).toMatch(/demo data already present/);
      expect(demo.output()).not.toMatch(/demo data loaded/);
      const gateway = /gateway (http:\/\/[0-9.:]+)/.exec(demo.output())![1];
      const { stdout: token } = await run(process.execPath, [BIN, 'token', '--user', 'alice', '--state-dir', stateDir]);
      const res = await fetch(`${gateway}/orgs/acme`, { headers: { authorization: `Bearer ${token.trim()}` } });
      expect(res.status).toBe(200);
    } finally {
      expect(await stopDemo(demo)).toBe(0);
    }
    expect(await postgresProcesses()).toBe('');
  }, 90_000);

  it('stops PostgreSQL on a second Ctrl-C during a slow shutdown, so the next start works', async () => {
    const demo = await startDemo(stateDir);
    const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => demo.child.on('close', (code, signal) => resolve({ code, signal })));
    // A request whose body never finishes keeps the gateway's shutdown waiting.
    const gateway = new URL(/gateway (http:\/\/[0-9.:]+)/.exec(demo.output())![1]!);
    const { stdout: token } = await run(process.execPath, [BIN, 'token', '--user', 'alice', '--state-dir', stateDir]);
    const stuck = net.connect(Number(gateway.port), gateway.hostname);
    stuck.on('error', () => undefined);
    await new Promise((resolve) => stuck.once('connect', resolve));
    stuck.write(`POST /orgs/acme/projects HTTP/1.1\r\nHost: ${gateway.host}\r\nAuthorization: Bearer ${token.trim()}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"slug":`);
    try {
      demo.child.kill('SIGINT');
      await waitForOutput(demo, /stopping:/);
      const before = Date.now();
      demo.child.kill('SIGINT');
      expect(await exited).toEqual({ code: 130, signal: null });
      expect(Date.now() - before).toBeLessThan(5_000);
      expect(demo.output()).toMatch(/SIGINT again: stopping now/);
      expect(await postgresProcesses()).toBe('');
    } finally {
      stuck.destroy();
      await killLeftoverPostgres();
    }
    const again = await startDemo(stateDir);
    expect(again.output()).toMatch(/demo data already present/);
    const code = await stopDemo(again);
    expect({ code, output: again.output() }).toEqual({ code: 0, output: expect.stringMatching(/stopped/) });
  }, 90_000);
});

async function waitForOutput(demo: RunningDemo, pattern: RegExp, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pattern.test(demo.output())) {
    if (Date.now() > deadline) throw new Error(`no ${pattern} in the demo's output after ${timeoutMs} ms:\n${demo.output()}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A failed test must not leave a server behind for the next one (or the next run) to trip on. */
async function killLeftoverPostgres(): Promise<void> {
  const pidFile = path.join(stateDir, 'pgdata', 'postmaster.pid');
  if (!existsSync(pidFile)) return;
  const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
  try {
    process.kill(pid, 'SIGQUIT');
  } catch {
    return;
  }
  const deadline = Date.now() + 10_000;
  while ((await postgresProcesses()) !== '' && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
}
