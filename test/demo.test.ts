// The zero-configuration start a newcomer meets first: `portcullis demo` (what `npm start`
// runs without a config file) prints curl commands and a story through the directory service
// that must do what they say, stops cleanly on Ctrl-C, and starts again on its kept data.
import { execFile, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect } from '@jest/globals';
import { BIN, spawnCli } from './support/cli-process';
import { waitFor } from './support/wait-for';

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

/** Runs printed commands exactly as a person would paste them into one shell, after the printed exports; stderr joins stdout. */
async function paste(printed: string, commands: string): Promise<string> {
  const exports = printed
    .split('\n')
    .filter((line) => line.startsWith('export '))
    .join('\n');
  const { stdout } = await run('bash', ['-c', `exec 2>&1\n${exports}\n${commands}`]);
  return stdout;
}

const STORY = 'The story: paste these in order, in one shell';

/** The printed commands before the story, and the story's (comments left out). */
function printedCommands(printed: string): { scenarios: string[]; story: string[] } {
  const at = printed.indexOf(STORY);
  const commands = (text: string) =>
    text
      .split('\n')
      .filter((line) => line !== '' && !line.startsWith('#') && !line.startsWith('export ') && /^(curl |[A-Z]+=\$\(curl )/.test(line));
  return { scenarios: commands(printed.slice(0, at)), story: commands(printed.slice(at)) };
}

// Not anchored: a body without a final newline runs into the next response's status line.
const statuses = (output: string) => [...output.matchAll(/HTTP\/1\.1 (\d{3})\b/g)].map((match) => Number(match[1]));

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
      // Development keys are the demo's own: no production warning about generated keys.
      expect(printed).not.toMatch(/checkpoint_key_file is not set/);
      const { scenarios, story } = printedCommands(printed);
      expect(scenarios).toHaveLength(8);
      const seen = [];
      for (const command of scenarios.slice(0, 7)) seen.push(statuses(await paste(printed, command))[0]);
      // directory read, echoed credentials, 409 on acme, cross-org 403, team-granted create, unregistered 403, no token
      expect(seen).toEqual([200, 200, 409, 403, 201, 403, 401]);
      expect(await paste(printed, scenarios[0]!)).toMatch(/"slug":"api"/);
      expect(await paste(printed, scenarios[1]!)).toMatch(/"x-portcullis-user": "[0-9a-f-]{36}"/);
      expect(await paste(printed, scenarios[2]!)).toMatch(/still has 3 projects \(api, mobile, web\)/);
      expect(await paste(printed, scenarios[5]!)).toMatch(/register first: PUT \/users\/me/);
      expect(JSON.parse(await paste(printed, scenarios[7]!))).toMatchObject({ revision: expect.stringMatching(/^sha256:/) });
      // The console the banner points to answers with its sign-in page.
      const consoleUrl = /The operator console: (http:\/\/\S+\/console\/)/.exec(printed)![1]!;
      const signIn = await fetch(consoleUrl);
      expect([signIn.status, await signIn.text()]).toEqual([200, expect.stringMatching(/<form[^>]*>/)]);

      // The story, pasted whole into one shell.
      const told = await paste(printed, story.join('\n'));
      expect({ statuses: statuses(told), told }).toEqual({
        told,
        statuses: [
          201,
          201,
          200, // carol registers, creates carolco, reads it
          403,
          201,
          201,
          200, // dave outside acme, alice invites him, he accepts, he reads acme
          403,
          201,
          204, // bob may not delete a project, alice attaches project-admin to builders, bob deletes web at once
          409,
          204,
          204,
          204, // acme still has projects, alice deletes them, then acme
        ],
      });
      expect(told).toMatch(/still has 2 projects \(api, mobile\)/);
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
      // What the story made is still there: carol's organization.
      const { stdout: token } = await run(process.execPath, [BIN, 'token', '--user', 'carol', '--state-dir', stateDir]);
      const res = await fetch(`${gateway}/orgs/carolco`, { headers: { authorization: `Bearer ${token.trim()}` } });
      expect(res.status).toBe(200);
      // A token the gateway would refuse (auth.max_token_lifetime_s, 24 h) is never minted.
      await expect(run(process.execPath, [BIN, 'token', '--user', 'carol', '--ttl', '48', '--state-dir', stateDir])).rejects.toMatchObject({
        code: 1,
        stderr: expect.stringMatching(/--ttl: must be a number of hours above 0 and at most 24/),
      });
    } finally {
      expect(await stopDemo(demo)).toBe(0);
    }
    expect(await postgresProcesses()).toBe('');
  }, 90_000);

  it('stops PostgreSQL on a second Ctrl-C during a slow shutdown, so the next start works', async () => {
    const demo = await startDemo(stateDir);
    const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
      demo.child.on('close', (code, signal) => resolve({ code, signal })),
    );
    // A request whose body never finishes keeps the gateway's shutdown waiting.
    const gateway = new URL(/gateway (http:\/\/[0-9.:]+)/.exec(demo.output())![1]!);
    const { stdout: token } = await run(process.execPath, [BIN, 'token', '--user', 'carol', '--state-dir', stateDir]);
    const stuck = net.connect(Number(gateway.port), gateway.hostname);
    stuck.on('error', () => undefined);
    await new Promise((resolve) => stuck.once('connect', resolve));
    stuck.write(
      `POST /orgs/carolco/projects HTTP/1.1\r\nHost: ${gateway.host}\r\nAuthorization: Bearer ${token.trim()}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"slug":`,
    );
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
  await waitFor(() => pattern.test(demo.output()), {
    timeoutMs,
    everyMs: 20,
    what: () => `${pattern} in the demo's output:\n${demo.output()}`,
  });
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
