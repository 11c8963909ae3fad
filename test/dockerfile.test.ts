// No Docker engine runs on these machines, so the image is kept honest by checking that
// everything the Dockerfile names exists and agrees with the code it packages.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import { IMAGE_NODE_FLAGS } from '../bench/bench-environment';
import { OPA_MODULE } from '../src/authz/opa-toolchain';
import { createCliContext } from '../src/cli/cli-context';
import { configSchema } from '../src/config/config-schema';
import { projectRoot } from '../src/project-root';
import { startBareAdminApp } from './support/bare-admin-app';

const dockerfile = readFileSync(path.join(projectRoot, 'Dockerfile'), 'utf8');
const instructions = dockerfile
  .replace(/\\\n/g, ' ')
  .split('\n')
  .map((line) => line.trim())
  .filter((line) => line && !line.startsWith('#'));
const packageJson = JSON.parse(readFileSync(path.join(projectRoot, 'package.json'), 'utf8')) as { scripts: Record<string, string> };

describe('Dockerfile', () => {
  it('copies only paths that exist in the repository', () => {
    const sources = instructions
      .filter((line) => line.startsWith('COPY ') && !line.includes('--from='))
      .flatMap((line) => line.split(/\s+/).slice(1, -1));
    expect(sources.length).toBeGreaterThan(5);
    for (const source of sources) expect([source, existsSync(path.join(projectRoot, source))]).toEqual([source, true]);
  });

  it("copies into the runtime every file of src/ that is not TypeScript (the console's static files), where the code reads it", () => {
    const runtime = instructions.slice(instructions.findIndex((line) => /^FROM .* AS runtime$/i.test(line)));
    const copied = runtime
      .filter((line) => line.startsWith('COPY ') && !line.includes('--from='))
      .map((line) => line.split(/\s+/).slice(1));
    const assets = listFiles(path.join(projectRoot, 'src'))
      .filter((file) => !file.endsWith('.ts'))
      .map((file) => path.relative(projectRoot, file));
    expect(assets.length).toBeGreaterThan(0);
    for (const asset of assets) {
      const by = copied.find(([source, target]) => asset.startsWith(source!) && source === target);
      expect([asset, by !== undefined]).toEqual([asset, true]);
    }
  });

  it('copies from build stages that it defines', () => {
    const stages = instructions.filter((line) => line.startsWith('FROM ')).map((line) => / AS (\S+)$/i.exec(line)?.[1]);
    const used = instructions.flatMap((line) => [...(/--from=(\S+)/.exec(line)?.slice(1) ?? [])]);
    for (const stage of used) expect(stages).toContain(stage);
  });

  it('runs only npm scripts that package.json defines', () => {
    const scripts = instructions.flatMap((line) => [...line.matchAll(/npm run (\S+)/g)].map((match) => match[1]!));
    expect(scripts).toContain('build');
    for (const script of scripts) expect(packageJson.scripts).toHaveProperty(script);
  });

  it('installs the same pinned OPA as the project and builds the same entrypoint', () => {
    expect(dockerfile).toContain(`go install ${OPA_MODULE}`);
    expect(dockerfile).toContain('-e portcullis/decision');
    expect(configSchema.parse({ auth: { issuer: 'i', audience: 'a', jwks_file: 'k' }, services: {} }).policy.entrypoint).toBe(
      'portcullis/decision',
    );
  });

  it('starts the CLI and checks health on the default admin port, which answers /healthz', async () => {
    // With the Node.js flags every benchmark target runs with, so the figures are the image's.
    expect(dockerfile).toContain(
      `ENTRYPOINT ${JSON.stringify(['node', ...IMAGE_NODE_FLAGS, 'bin/portcullis.js'])}`.replaceAll('","', '", "'),
    );
    for (const flag of IMAGE_NODE_FLAGS) expect(spawnSync(process.execPath, [flag, '-e', '0']).status).toBe(0);
    expect(existsSync(path.join(projectRoot, 'bin', 'portcullis.js'))).toBe(true);
    const url = /fetch\('(http:\/\/127\.0\.0\.1:(\d+)(\/\S+?))'\)/.exec(dockerfile);
    expect(url?.[2]).toBe(String(configSchema.parse({ auth: { issuer: 'i', audience: 'a', jwks_file: 'k' }, services: {} }).admin.port));
    const admin = await startBareAdminApp();
    try {
      expect((await fetch(`${admin.url}${url![3]}`)).status).toBe(200);
    } finally {
      admin.close();
    }
  });

  it('runs as a non-root user with a health check', () => {
    expect(instructions.some((line) => /^USER (?!root)\S+/.test(line))).toBe(true);
    expect(instructions.some((line) => line.startsWith('HEALTHCHECK '))).toBe(true);
  });

  it('keeps its state in a folder the non-root user owns, not beside the read-only config the README mounts', () => {
    const runtime = instructions.slice(instructions.findIndex((line) => /^FROM .* AS runtime$/i.test(line)));
    const env = runtime.filter((line) => line.startsWith('ENV ')).join(' ');
    const stateDir = /PORTCULLIS_STATE_DIR=(\S+)/.exec(env)?.[1];
    const configFile = /PORTCULLIS_CONFIG=(\S+)/.exec(env)?.[1];
    expect(stateDir).toBe('/var/lib/portcullis');
    expect(configFile).toBe('/etc/portcullis/portcullis.yaml');

    const userAt = runtime.findIndex((line) => line.startsWith('USER '));
    const user = runtime[userAt]!.split(/\s+/)[1];
    const prepared = runtime
      .slice(0, userAt)
      .filter((line) => line.startsWith('RUN '))
      .join(' ');
    expect(prepared).toContain(`mkdir -p ${stateDir}`);
    expect(prepared).toMatch(new RegExp(`chown ${user} ${stateDir}( |$)`));

    // The CLI takes the state folder from that variable, whatever folder the config is in.
    const ctx = createCliContext(
      new Command(),
      {
        env: { PORTCULLIS_CONFIG: configFile, PORTCULLIS_STATE_DIR: stateDir },
        out: () => undefined,
        err: () => undefined,
        cwd: '/opt/portcullis',
      },
      () => undefined,
    );
    expect(ctx.stateDir(ctx.configFile())).toBe(stateDir);

    const readme = readFileSync(path.join(projectRoot, 'README.md'), 'utf8');
    const dockerRun = /docker run [^`]*/.exec(readme)?.[0] ?? '';
    expect(dockerRun).toContain(`:${configFile}:ro`);
  });
});

function listFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? listFiles(path.join(dir, entry.name)) : [path.join(dir, entry.name)],
  );
}
