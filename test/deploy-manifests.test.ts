// No cluster or Docker engine runs on these machines, so deploy/ is kept honest like the
// Dockerfile is: every port, path, command, variable and file the Kubernetes manifests,
// compose.yaml and the nginx config name must exist and agree with the code and its config.
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from '@jest/globals';
import pino from 'pino';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { configSchema, type PortcullisConfig } from '../src/config/config-schema';
import { loadConfigFile } from '../src/config/load-config';
import { DirectoryService } from '../src/directory-service/directory-service';
import { projectRoot } from '../src/project-root';
import { startBareAdminApp } from './support/bare-admin-app';
import { requireBuild, runCli } from './support/cli-process';
import { SHIPPED_NGINX_CONF, templateShippedConfig } from './support/nginx-process';
import { deploymentPodName } from './support/pod-name';
import { createTestDatabase } from './support/test-database';

// The fields of the manifests and of compose.yaml that the tests read. The YAML is taken to have
// this shape (a missing field fails the test that reads it); the tests check the values.
type Labels = Record<string, string>;

interface KubernetesObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string };
}

interface ConfigMap extends KubernetesObject {
  data: Record<string, string>;
}

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: { name: string; key: string }; fieldRef?: { fieldPath: string } };
}

interface HttpProbe {
  httpGet: { path: string; port: string };
}

interface Container {
  image: string;
  args: string[];
  envFrom?: { configMapRef: { name: string } }[];
  env?: EnvVar[];
  ports: { name: string; containerPort: number }[];
  volumeMounts: { name: string; mountPath: string; subPath?: string; readOnly?: boolean }[];
  securityContext: Record<string, unknown>;
  resources: { requests: { cpu?: string; memory?: string } };
  readinessProbe: HttpProbe;
  livenessProbe: HttpProbe;
  startupProbe: HttpProbe;
  lifecycle: { preStop: { exec: { command: string[] } } };
}

interface PodSpec {
  securityContext: { runAsNonRoot: boolean; runAsUser: number };
  terminationGracePeriodSeconds: number;
  containers: Container[];
  volumes: { name: string; configMap?: { name: string }; secret?: { secretName: string; items: { path: string }[] }; emptyDir?: object }[];
}

/** A Deployment or a Job: a pod template. */
interface Workload extends KubernetesObject {
  spec: {
    selector: { matchLabels: Labels };
    template: { metadata: { labels: Labels; annotations: Record<string, string> }; spec: PodSpec };
  };
}

interface KubernetesService extends KubernetesObject {
  spec: { selector: Labels; ports: { port: number; targetPort: string }[] };
}

interface DisruptionBudget extends KubernetesObject {
  spec: { selector: { matchLabels: Labels }; maxUnavailable: number };
}

interface Autoscaler extends KubernetesObject {
  spec: {
    scaleTargetRef: { apiVersion: string; kind: string; name: string };
    minReplicas: number;
    metrics: { resource: { name: string } }[];
  };
}

interface Kinds {
  ConfigMap: ConfigMap;
  Deployment: Workload;
  Job: Workload;
  Service: KubernetesService;
  PodDisruptionBudget: DisruptionBudget;
  HorizontalPodAutoscaler: Autoscaler;
}

interface ComposeService {
  command?: string[];
  environment?: Record<string, string>;
  volumes?: string[];
  ports?: string[];
  depends_on?: Record<string, unknown>;
}

interface Compose {
  services: Record<string, ComposeService>;
  volumes: Record<string, unknown>;
  'x-portcullis': { image: string; build: { context: string } };
}

const deploy = path.join(projectRoot, 'deploy');
const kubernetesDir = path.join(deploy, 'kubernetes');
const configText = readFileSync(path.join(deploy, 'portcullis.yaml'), 'utf8');
const nginxConf = readFileSync(SHIPPED_NGINX_CONF, 'utf8');
const compose = parseYaml(readFileSync(path.join(deploy, 'compose.yaml'), 'utf8'), { merge: true }) as Compose;
const packageJson = JSON.parse(readFileSync(path.join(projectRoot, 'package.json'), 'utf8')) as { version: string };
const dockerfile = readFileSync(path.join(projectRoot, 'Dockerfile'), 'utf8');

const manifestFiles = readdirSync(kubernetesDir).filter((file) => file.endsWith('.yaml') && file !== 'kustomization.yaml');
const manifests: KubernetesObject[] = manifestFiles.flatMap((file) =>
  parseAllDocuments(readFileSync(path.join(kubernetesDir, file), 'utf8')).map((document) => document.toJS() as KubernetesObject),
);
const byKind = <K extends keyof Kinds>(kind: K) => manifests.filter((manifest) => manifest.kind === kind) as Kinds[K][];
const named = <K extends keyof Kinds>(kind: K, name: string): Kinds[K] => {
  const found = byKind(kind).find((manifest) => manifest.metadata.name === name);
  if (!found) throw new Error(`no ${kind} ${name} in deploy/kubernetes`);
  return found;
};
const gatewayDeployment = named('Deployment', 'portcullis-gateway');
const directoryDeployment = named('Deployment', 'portcullis-directory');
const migrateJob = named('Job', 'portcullis-migrate');
/** Every pod template: two Deployments and the Job. */
const workloads = [gatewayDeployment, directoryDeployment, migrateJob];
const podSpec = (workload: Workload): PodSpec => workload.spec.template.spec;
const container = (workload: Workload): Container => {
  const [main] = podSpec(workload).containers;
  if (!main) throw new Error(`${workload.metadata.name} has no container`);
  return main;
};

/** The Dockerfile's runtime ENV values and the uid it creates. */
const imageEnv = (name: string) => new RegExp(`${name}=(\\S+)`).exec(dockerfile)?.[1];
const imageUid = Number(/useradd [^\n]*--uid (\d+)/.exec(dockerfile)?.[1]);

/** The environment a container sees: literal values, secrets as placeholders, and the ConfigMaps it takes whole. */
function containerEnv(spec: Container): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = {};
  for (const source of spec.envFrom ?? []) Object.assign(env, named('ConfigMap', source.configMapRef.name).data);
  for (const variable of spec.env ?? []) {
    env[variable.name] = variable.value ?? (variable.valueFrom?.secretKeyRef ? secretPlaceholder(variable.name) : podField(variable));
  }
  return env;
}
const podName = (workload: Workload) => deploymentPodName(workload.metadata.name);
/** What the downward API gives: the gateway pod's name. */
const podField = (variable: EnvVar) =>
  variable.valueFrom?.fieldRef?.fieldPath === 'metadata.name' ? podName(gatewayDeployment) : undefined;
const secretPlaceholder = (name: string) =>
  name === 'DATABASE_URL' ? 'postgres://portcullis:secret@db.internal:5432/portcullis' : `secret-${name.toLowerCase()}-0123456789`;

let scratch: string;
async function loadWith(env: Record<string, string | undefined>): Promise<PortcullisConfig> {
  const file = path.join(scratch, 'portcullis.yaml');
  await writeFile(file, configText);
  return loadConfigFile(file, env);
}
let shipped: PortcullisConfig;

beforeAll(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), 'portcullis-deploy-'));
  shipped = await loadWith(containerEnv(container(gatewayDeployment)));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

describe('deploy/kubernetes', () => {
  it('lists every manifest in its kustomization, and each is a named Kubernetes object', () => {
    const kustomization = parseYaml(readFileSync(path.join(kubernetesDir, 'kustomization.yaml'), 'utf8')) as { resources: string[] };
    expect([...kustomization.resources].sort()).toEqual([...manifestFiles].sort());
    for (const manifest of manifests) expect([manifest.apiVersion, manifest.kind, manifest.metadata?.name].every(Boolean)).toBe(true);
    expect(new Set(manifests.map((manifest) => manifest.kind))).toEqual(
      new Set(['ConfigMap', 'Deployment', 'Service', 'Job', 'PodDisruptionBudget', 'HorizontalPodAutoscaler']),
    );
  });

  it('carries deploy/portcullis.yaml word for word, and it loads with the real config loader in the environment of every container', async () => {
    expect(named('ConfigMap', 'portcullis-config').data['portcullis.yaml']).toBe(configText);
    for (const workload of workloads) {
      const config = await loadWith(containerEnv(container(workload)));
      expect([workload.metadata.name, config.database.url]).toEqual([workload.metadata.name, secretPlaceholder('DATABASE_URL')]);
    }
    expect(shipped.admin.token).toBe(secretPlaceholder('PORTCULLIS_ADMIN_TOKEN'));
    expect(shipped.auth.jwks_url).toBe(named('ConfigMap', 'portcullis-env').data.PORTCULLIS_JWKS_URL);
    // A SIGKILLed instance must leave no served request unrecorded (README: "Running more than one instance").
    expect(shipped.audit.mode).toBe('strict');
    // So a record counts as durable in a spool only where the spool outlives the pod: an emptyDir does not.
    expect(podSpec(gatewayDeployment).volumes.find((volume) => volume.name === 'state')?.emptyDir).toBeDefined();
    const gateway = await loadWith(containerEnv(container(gatewayDeployment)));
    expect(gateway.audit.spool).toBe('none');
    // Each pod's chain is named after the pod (the loader has checked the name is a chain's).
    expect(gateway.audit.instance_id).toBe(podName(gatewayDeployment));
  });

  it('takes the database URL and the admin token from Secrets, never from a literal', () => {
    for (const workload of workloads) {
      const database = container(workload).env?.find((variable) => variable.name === 'DATABASE_URL');
      expect(database?.valueFrom?.secretKeyRef).toEqual({ name: 'portcullis-database', key: 'url' });
    }
    const token = container(gatewayDeployment).env?.find((variable) => variable.name === 'PORTCULLIS_ADMIN_TOKEN');
    expect(token?.valueFrom?.secretKeyRef).toEqual({ name: 'portcullis-admin', key: 'token' });
    expect(JSON.stringify(named('ConfigMap', 'portcullis-env'))).not.toMatch(/postgres:\/\/|token/i);
  });

  it('mounts the config where the image looks for it, and every key file the config names from the keys Secret', () => {
    for (const workload of workloads) {
      const spec = container(workload);
      const configPath = imageEnv('PORTCULLIS_CONFIG');
      expect(containerEnv(spec).PORTCULLIS_CONFIG).toBe(configPath);
      const mount = spec.volumeMounts.find((candidate) => candidate.mountPath === configPath);
      expect(mount).toMatchObject({ subPath: 'portcullis.yaml', readOnly: true });
      expect(podSpec(workload).volumes.find((volume) => volume.name === mount?.name)?.configMap?.name).toBe('portcullis-config');
    }
    const keyFiles = (workload: Workload) => {
      const spec = podSpec(workload);
      return container(workload).volumeMounts.flatMap((mount) => {
        const volume = spec.volumes.find((candidate) => candidate.name === mount.name);
        if (!volume) throw new Error(`${workload.metadata.name} mounts ${mount.name}, which is not a volume of its pod`);
        const { secret } = volume;
        return secret?.secretName === 'portcullis-keys' ? secret.items.map((item) => path.posix.join(mount.mountPath, item.path)) : [];
      });
    };
    expect(keyFiles(gatewayDeployment).sort()).toEqual([shipped.assertion.signing_key_file, shipped.audit.checkpoint_key_file].sort());
    // The directory service verifies assertions with the public half of the gateway's key.
    expect(keyFiles(directoryDeployment)).toEqual([shipped.assertion.signing_key_file]);
    // The policy is the bundle the Dockerfile bakes into the image.
    const workdir = /^WORKDIR (\S+)$/m.exec(dockerfile.slice(dockerfile.indexOf('AS runtime')))?.[1];
    const bundle = /COPY --from=policy \S+bundle\.tar\.gz (\S+)/.exec(dockerfile)?.[1];
    expect(shipped.policy.source).toBe(path.posix.join(workdir!, bundle!));
  });

  it('runs non-root (the image’s user) with a read-only root filesystem, writing only to emptyDirs at the state folder and /tmp, with resource requests', () => {
    const stateDir = imageEnv('PORTCULLIS_STATE_DIR');
    for (const workload of workloads) {
      const spec = podSpec(workload);
      const main = container(workload);
      expect([workload.metadata.name, spec.securityContext.runAsNonRoot, spec.securityContext.runAsUser]).toEqual([
        workload.metadata.name,
        true,
        imageUid,
      ]);
      expect(main.securityContext).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false });
      expect(main.resources.requests).toEqual({ cpu: expect.any(String), memory: expect.any(String) });
      expect(containerEnv(main).PORTCULLIS_STATE_DIR).toBe(stateDir);
      const writable = main.volumeMounts.filter((mount) => !mount.readOnly);
      for (const mount of writable) {
        expect(spec.volumes.find((volume) => volume.name === mount.name)?.emptyDir).toBeDefined();
        expect([stateDir, '/tmp']).toContain(mount.mountPath);
      }
      expect(writable.map((mount) => mount.mountPath)).toContain('/tmp');
    }
    for (const workload of [gatewayDeployment, directoryDeployment]) {
      expect(container(workload).volumeMounts.map((mount) => mount.mountPath)).toContain(stateDir);
    }
  });

  it('runs real CLI commands', async () => {
    requireBuild();
    const commands = [
      ...workloads.map((workload) => container(workload).args),
      ...Object.values(compose.services).flatMap((service) => (service.command ? [service.command] : [])),
    ];
    expect(commands.map((args) => args.join(' '))).toEqual(expect.arrayContaining(['serve', 'directory serve', 'migrate']));
    for (const args of new Set(commands.map((command) => command.join(' ')))) {
      const run = await runCli([...args.split(' '), '--help']);
      expect([args, run.code, run.stdout]).toEqual([args, 0, expect.stringContaining(`Usage: portcullis ${args} `)]);
    }
  }, 30_000);

  it('probes paths the admin app answers, on the admin port of the config', async () => {
    const main = container(gatewayDeployment);
    const port = (name: string) => main.ports.find((candidate) => candidate.name === name)?.containerPort;
    expect([port('http'), port('admin')]).toEqual([shipped.server.port, shipped.admin.port]);
    expect([main.readinessProbe.httpGet.path, main.livenessProbe.httpGet.path]).toEqual(['/readyz', '/healthz']);
    const admin = await startBareAdminApp();
    try {
      for (const probe of [main.readinessProbe, main.livenessProbe, main.startupProbe]) {
        expect(probe.httpGet.port).toBe('admin');
        expect([probe.httpGet.path, (await fetch(`${admin.url}${probe.httpGet.path}`)).status]).toEqual([probe.httpGet.path, 200]);
      }
    } finally {
      admin.close();
    }
    // The Prometheus annotations point to the admin port's /metrics.
    expect(gatewayDeployment.spec.template.metadata.annotations).toMatchObject({
      'prometheus.io/port': String(shipped.admin.port),
      'prometheus.io/path': '/metrics',
    });
  });

  it('probes a path the directory service answers, on the directory port of the config', async () => {
    const main = container(directoryDeployment);
    expect(main.ports).toEqual([{ name: 'http', containerPort: shipped.directory.port }]);
    const database = await createTestDatabase();
    const keyDir = await mkdtemp(path.join(scratch, 'keys-'));
    const signingKey = path.join(keyDir, 'assertion-key.pem');
    await writeFile(signingKey, generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }));
    const config = configSchema.parse({
      ...structuredClone(shipped),
      database: { url: database.url },
      assertion: { ...shipped.assertion, signing_key_file: signingKey },
      directory: { ...shipped.directory, host: '127.0.0.1', port: 0 },
    });
    const service = await DirectoryService.start(config, { logger: pino({ level: 'silent' }) });
    try {
      for (const probe of [main.readinessProbe, main.livenessProbe]) {
        expect(probe.httpGet.port).toBe('http');
        expect([probe.httpGet.path, (await fetch(`${service.url}${probe.httpGet.path}`)).status]).toEqual([probe.httpGet.path, 200]);
      }
    } finally {
      await service.close();
      await database.drop();
    }
  });

  it('has Services that select their pods by named ports, the directory one where the config sends the gateway', () => {
    for (const service of byKind('Service')) {
      const workload = [gatewayDeployment, directoryDeployment].find((candidate) =>
        Object.entries(service.spec.selector).every(([key, value]) => candidate.spec.template.metadata.labels[key] === value),
      );
      expect([service.metadata.name, workload?.metadata.name]).toEqual([service.metadata.name, expect.any(String)]);
      for (const port of service.spec.ports)
        expect(container(workload!).ports.map((candidate) => candidate.name)).toContain(port.targetPort);
    }
    const directoryService = named('Service', 'portcullis-directory');
    for (const [name, { url }] of Object.entries(shipped.services)) {
      const target = new URL(url);
      expect([name, target.hostname, Number(target.port)]).toEqual([
        name,
        directoryService.metadata.name,
        directoryService.spec.ports[0]?.port,
      ]);
    }
  });

  it('budgets disruptions of both Deployments and scales the gateway on CPU it requests', () => {
    for (const workload of [gatewayDeployment, directoryDeployment]) {
      expect(workload.spec.selector.matchLabels).toEqual(workload.spec.template.metadata.labels);
      const budget = byKind('PodDisruptionBudget').find(
        (candidate) => JSON.stringify(candidate.spec.selector.matchLabels) === JSON.stringify(workload.spec.selector.matchLabels),
      );
      expect([workload.metadata.name, budget?.spec.maxUnavailable]).toEqual([workload.metadata.name, 1]);
    }
    const [autoscaler] = byKind('HorizontalPodAutoscaler');
    expect(autoscaler!.spec.scaleTargetRef).toEqual({
      apiVersion: gatewayDeployment.apiVersion,
      kind: 'Deployment',
      name: gatewayDeployment.metadata.name,
    });
    expect(autoscaler!.spec.minReplicas).toBeGreaterThanOrEqual(2);
    expect(autoscaler!.spec.metrics[0]?.resource.name).toBe('cpu');
    expect(container(gatewayDeployment).resources.requests.cpu).toBeDefined();
    // Above the gateway's own shutdown grace plus the preStop pause.
    const preStop = Number(container(gatewayDeployment).lifecycle.preStop.exec.command[1]);
    expect(podSpec(gatewayDeployment).terminationGracePeriodSeconds).toBeGreaterThan(shipped.server.shutdown_grace_ms / 1000 + preStop);
  });

  it('uses the image the Dockerfile builds, tagged with the package version', () => {
    const images = new Set([...workloads.map((workload) => container(workload).image), compose['x-portcullis'].image]);
    expect(images).toEqual(new Set([`portcullis:${packageJson.version}`]));
  });
});

describe('deploy/compose.yaml', () => {
  const services = compose.services;

  it('mounts only files of the repository (and the operator’s keys folder), and builds from the folder holding the Dockerfile', () => {
    expect(existsSync(path.join(deploy, compose['x-portcullis'].build.context, 'Dockerfile'))).toBe(true);
    for (const [name, service] of Object.entries(services)) {
      for (const volume of service.volumes ?? []) {
        const [source, target] = volume.split(':');
        if (!source!.startsWith('.')) {
          expect([name, compose.volumes]).toEqual([name, expect.objectContaining({ [source!]: expect.anything() })]);
          continue;
        }
        const file = path.join(deploy, source!);
        // Key files are made by the operator (README); their folder exists and ignores them.
        expect([volume, existsSync(file.startsWith(path.join(deploy, 'keys')) ? path.join(deploy, 'keys', '.gitignore') : file)]).toEqual([
          volume,
          true,
        ]);
        if (source === './portcullis.yaml') expect(target).toBe(imageEnv('PORTCULLIS_CONFIG'));
      }
      for (const dependency of Object.keys(service.depends_on ?? {})) expect(Object.keys(services)).toContain(dependency);
    }
  });

  it('gives every Portcullis service the config, the environment it needs and the key files it names', async () => {
    for (const name of ['migrate', 'portcullis-directory', 'gateway-1', 'gateway-2', 'gateway-3']) {
      const service = services[name]!;
      const env = Object.fromEntries(
        Object.entries(service.environment as Record<string, string>).map(([key, value]) => [
          key,
          value.replace(/^\$\{\w+:[-?](.*)\}$/, '$1'),
        ]),
      );
      const config = await loadWith(env);
      expect([name, config.database.url]).toEqual([name, expect.stringMatching(/^postgres:\/\/.+@postgres:5432\//)]);
      expect(env.PORTCULLIS_STATE_DIR).toBe(imageEnv('PORTCULLIS_STATE_DIR'));
      const mounted = (file: string) =>
        (service.volumes as string[]).some((volume) => volume.split(':')[1] === file || file.startsWith(`${volume.split(':')[1]}/`));
      if (name.startsWith('gateway')) {
        expect([config.assertion.signing_key_file, config.audit.checkpoint_key_file].every((file) => mounted(file!))).toBe(true);
        // A volume of its own that outlives the container keeps the spool strict mode counts on.
        expect(service.volumes).toContain(`${name}-state:${imageEnv('PORTCULLIS_STATE_DIR')}`);
        expect(config.audit.spool).toBe('local');
        // …and the instance id generated into it on the first start: the same chain after a restart.
        expect(config.audit.instance_id).toBeUndefined();
      }
      if (name === 'portcullis-directory') expect(mounted(config.assertion.signing_key_file!)).toBe(true);
    }
    for (const [name, { url }] of Object.entries(shipped.services)) {
      expect([name, services[new URL(url).hostname]?.command]).toEqual([name, ['directory', 'serve']]);
      expect(Number(new URL(url).port)).toBe(shipped.directory.port);
    }
  });

  it('puts nginx in front of the three gateways, on the ports the config and nginx’s listen directive give', () => {
    const upstreams = [...nginxConf.matchAll(/^\s*server (\S+):(\d+) [^;]*;$/gm)];
    expect(upstreams.map((match) => match[1])).toEqual(['gateway-1', 'gateway-2', 'gateway-3']);
    for (const match of upstreams) {
      expect(services[match[1]!]!.command).toEqual(['serve']);
      expect(Number(match[2])).toBe(shipped.server.port);
    }
    const listen = /^\s*listen (\d+);$/m.exec(nginxConf)?.[1];
    expect(services.nginx!.ports).toEqual([`${listen}:${listen}`]);
    expect(services.nginx!.volumes).toEqual(['./nginx/portcullis.conf:/etc/nginx/conf.d/default.conf:ro']);
  });
});

describe('deploy/nginx/portcullis.conf', () => {
  const directive = (name: string) => new RegExp(`^\\s*${name} ([^;]+);(\\s*#.*)?$`, 'm').exec(nginxConf)?.[1];

  it('retries failed requests on another instance, but never a non-idempotent one once sent', () => {
    const retried = directive('proxy_next_upstream')!.split(/\s+/);
    expect(retried).toEqual(expect.arrayContaining(['error', 'timeout', 'http_502', 'http_503', 'http_504']));
    expect(retried).not.toContain('non_idempotent');
    expect(Number(directive('proxy_next_upstream_tries'))).toBeGreaterThan(1);
  });

  it('takes a failing instance out by passive health checks, and keeps within the gateway’s limits and timeouts', () => {
    for (const server of nginxConf.matchAll(/^\s*server \S+:\d+ ([^;]*);$/gm)) expect(server[1]).toMatch(/max_fails=\d+ fail_timeout=\d+s/);
    const defaults = configSchema.parse({ auth: { issuer: 'i', audience: 'a', jwks_file: 'k' }, services: {} });
    expect(Number(/^(\d+)m$/.exec(directive('client_max_body_size')!)?.[1]) * 1024 * 1024).toBeGreaterThanOrEqual(
      defaults.server.body_limit_bytes,
    );
    expect(Number(/^(\d+)s$/.exec(directive('proxy_read_timeout')!)?.[1]) * 1000).toBeGreaterThan(defaults.server.upstream_timeout_ms);
    // Upstream keep-alive connections close on nginx's side first, before the gateway's 5 s.
    expect(Number(/^(\d+)s$/.exec(directive('keepalive_timeout')!)?.[1])).toBeLessThan(5);
  });

  it('is templated by the cluster test only in its upstream addresses and listen port', () => {
    const templated = templateShippedConfig(nginxConf, ['127.0.0.1:1001', '127.0.0.1:1002', '127.0.0.1:1003'], 2000);
    const changed = (text: string) => text.split('\n').filter((line) => /^\s*(server \S+:\d+|listen )/.test(line));
    const rest = (text: string) => text.split('\n').filter((line) => !/^\s*(server \S+:\d+|listen )/.test(line));
    expect(rest(templated)).toEqual(rest(nginxConf));
    expect(changed(templated).map((line) => line.trim())).toEqual([
      'server 127.0.0.1:1001 max_fails=1 fail_timeout=2s;',
      'server 127.0.0.1:1002 max_fails=1 fail_timeout=2s;',
      'server 127.0.0.1:1003 max_fails=1 fail_timeout=2s;',
      'listen 127.0.0.1:2000;',
    ]);
  });
});
