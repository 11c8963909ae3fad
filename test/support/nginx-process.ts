// A real nginx (Debian's package) as a plain process on loopback, serving the config shipped
// in deploy/nginx/portcullis.conf with only its upstream addresses and listen port changed.
// When nginx is missing it is installed with apt-get if the test runs as root (as CI does).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { projectRoot } from '../../src/project-root';
import { waitFor } from './wait-for';

export const SHIPPED_NGINX_CONF = path.join(projectRoot, 'deploy', 'nginx', 'portcullis.conf');
const UPSTREAM_BLOCK = /(upstream portcullis_gateway \{)([^}]*)(\})/;
const UPSTREAM_SERVER = /^(\s*)server \S+:\d+( [^;]*)?;$/gm;
const LISTEN = /^(\s*)listen 8080;$/m;

function findNginx(): string | undefined {
  for (const dir of [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/usr/local/sbin']) {
    const candidate = path.join(dir, 'nginx');
    if (dir && existsSync(candidate)) return candidate;
  }
  return undefined;
}

/** The nginx binary; installs Debian's package first when it is missing and this process is root. */
export function ensureNginx(): string {
  const found = findNginx();
  if (found) return found;
  if (process.getuid?.() !== 0) {
    throw new Error(
      'nginx is not installed and this test is not running as root to install it: run `apt-get install -y nginx` (Debian/Ubuntu) first',
    );
  }
  // RUNLEVEL=1: the package's post-install script must not start a system nginx on port 80.
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive', RUNLEVEL: '1' };
  const install = () =>
    spawnSync('apt-get', ['-o', 'DPkg::Lock::Timeout=300', 'install', '-y', '--no-install-recommends', 'nginx'], { env, encoding: 'utf8' });
  let result = install();
  if (result.status !== 0) {
    // A fresh machine may have no package lists yet.
    spawnSync('apt-get', ['-o', 'DPkg::Lock::Timeout=300', 'update'], { env, encoding: 'utf8' });
    result = install();
  }
  const installed = findNginx();
  if (result.status !== 0 || !installed) {
    throw new Error(
      `nginx is missing and \`apt-get install -y nginx\` failed (exit ${result.status}): ${(result.stderr || result.stdout || String(result.error)).trim().split('\n').pop()}`,
    );
  }
  return installed;
}

/**
 * The shipped config with its upstream servers replaced by `upstreams` (each keeping the
 * shipped parameters) and `listen 8080` by a loopback port. Throws when the shipped file no
 * longer has that shape, so the test never silently runs a config of its own.
 */
export function templateShippedConfig(shipped: string, upstreams: string[], listenPort: number): string {
  const block = UPSTREAM_BLOCK.exec(shipped);
  if (!block) throw new Error(`${SHIPPED_NGINX_CONF} has no "upstream portcullis_gateway { ... }" block`);
  const servers = [...block[2]!.matchAll(UPSTREAM_SERVER)];
  if (servers.length === 0) throw new Error(`${SHIPPED_NGINX_CONF}: the upstream block lists no "server host:port ...;" line`);
  const [, indent, parameters] = servers[0]!;
  const body = block[2]!.replace(UPSTREAM_SERVER, '').replace(/^\s*\n/gm, '');
  const lines = upstreams.map((address) => `${indent}server ${address}${parameters ?? ''};\n`).join('');
  const withUpstreams = shipped.replace(UPSTREAM_BLOCK, `$1\n${lines}${body}$3`);
  if (!LISTEN.test(withUpstreams)) throw new Error(`${SHIPPED_NGINX_CONF} has no "listen 8080;" line`);
  return withUpstreams.replace(LISTEN, `$1listen 127.0.0.1:${listenPort};`);
}

export interface NginxProcess {
  url: string;
  /** The templated server config nginx runs. */
  config: string;
  /** nginx's error log so far. */
  errorLog(): Promise<string>;
  stop(): Promise<void>;
}

/** Runs nginx in the foreground with the shipped config, templated for `upstreams` and `port`, under `dir`. */
export async function startNginx(options: { dir: string; upstreams: string[]; port: number }): Promise<NginxProcess> {
  const binary = ensureNginx();
  const { dir, port } = options;
  await mkdir(path.join(dir, 'temp'), { recursive: true });
  const config = templateShippedConfig(await readFile(SHIPPED_NGINX_CONF, 'utf8'), options.upstreams, port);
  await writeFile(path.join(dir, 'portcullis.conf'), config);
  const errorLog = path.join(dir, 'error.log');
  const temp = (name: string) => path.join(dir, 'temp', name);
  await writeFile(
    path.join(dir, 'nginx.conf'),
    [
      // As root the workers would switch to "nobody", who cannot enter this private temporary folder.
      ...(process.getuid?.() === 0 ? ['user root;'] : []),
      'daemon off;',
      'worker_processes 1;',
      `pid ${path.join(dir, 'nginx.pid')};`,
      `error_log ${errorLog} warn;`,
      'events { worker_connections 1024; }',
      'http {',
      '  access_log off;',
      `  client_body_temp_path ${temp('body')};`,
      `  proxy_temp_path ${temp('proxy')};`,
      `  fastcgi_temp_path ${temp('fastcgi')};`,
      `  uwsgi_temp_path ${temp('uwsgi')};`,
      `  scgi_temp_path ${temp('scgi')};`,
      `  include ${path.join(dir, 'portcullis.conf')};`,
      '}',
      '',
    ].join('\n'),
  );
  const check = spawnSync(binary, ['-t', '-p', dir, '-c', path.join(dir, 'nginx.conf'), '-e', errorLog], { encoding: 'utf8' });
  if (check.status !== 0) throw new Error(`nginx -t refused the config: ${check.stderr.trim()}`);

  const child: ChildProcess = spawn(binary, ['-p', dir, '-c', path.join(dir, 'nginx.conf'), '-e', errorLog], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitFor(
      async () => {
        if (child.exitCode !== null) throw new Error(`nginx exited with ${child.exitCode}: ${stderr}`);
        return (await fetch(`${url}/`, { method: 'HEAD' }).catch(() => undefined)) !== undefined;
      },
      { timeoutMs: 10_000, everyMs: 50, what: 'nginx to listen' },
    );
  } catch (error) {
    child.kill('SIGKILL');
    throw error;
  }
  return {
    url,
    config,
    errorLog: () => readFile(errorLog, 'utf8').catch(() => ''),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        // SIGQUIT: nginx's graceful stop.
        child.kill('SIGQUIT');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
        await exited;
        clearTimeout(timer);
      }
    },
  };
}
