// What policy-lifecycle tests need around a gateway: a private copy of the shipped policies to
// edit, real signing keys, and bundles rewritten file by file (to tamper with them).
import { generateKeyPairSync } from 'node:crypto';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { c as createTar, x as extractTar } from 'tar';
import { buildWasmBundle } from '../../src/authz/opa-toolchain';
import { projectRoot } from '../../src/project-root';

export function testOpa(): string {
  const opa = process.env.PORTCULLIS_TEST_OPA;
  if (!opa) throw new Error('PORTCULLIS_TEST_OPA is not set: run tests through jest (global setup)');
  return opa;
}

/** A fresh folder under the system temp dir; the test removes it. */
export async function scratchDir(prefix: string): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), `portcullis-${prefix}-`));
}

/** A copy of the shipped policies/ under `dir`, to edit freely. */
export async function copyShippedPolicies(dir: string, name = 'policies'): Promise<string> {
  const target = path.join(dir, name);
  await cp(path.join(projectRoot, 'policies'), target, { recursive: true });
  return target;
}

/**
 * The shipped organization.rego's text with "*" no longer granting anything: a candidate
 * policy under which organization admins lose what only "*" gave them. Throws when the
 * shipped text no longer has the line it edits, so no test runs on an unchanged policy.
 */
export function withoutStar(text: string): string {
  const changed = text.replace('concat("", [split(input.action, ":")[0], ":*"]), "*"]', 'concat("", [split(input.action, ":")[0], ":*"])]');
  if (changed === text) throw new Error('organization.rego no longer lists "*" in granted_by as these tests expect');
  return changed;
}

export interface SigningKeys {
  privateKeyFile: string;
  publicKeyFile: string;
}

/** A fresh RSA (2048) or EC P-256 key pair as PKCS#8 / SPKI PEM files. */
export async function generateSigningKeys(dir: string, kind: 'rsa' | 'ec', name: string = kind): Promise<SigningKeys> {
  const pair =
    kind === 'rsa'
      ? generateKeyPairSync('rsa', {
          modulusLength: 2048,
          publicKeyEncoding: { type: 'spki', format: 'pem' },
          privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
        })
      : generateKeyPairSync('ec', {
          namedCurve: 'P-256',
          publicKeyEncoding: { type: 'spki', format: 'pem' },
          privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
        });
  const privateKeyFile = path.join(dir, `${name}-private.pem`);
  const publicKeyFile = path.join(dir, `${name}-public.pem`);
  await writeFile(privateKeyFile, pair.privateKey);
  await writeFile(publicKeyFile, pair.publicKey);
  return { privateKeyFile, publicKeyFile };
}

/** `opa build` of `source` into `output`, signed when a key is given (as `policy build --signing-key` does). */
export async function buildBundle(
  source: string,
  output: string,
  options: { signingKey?: string; algorithm?: string; entrypoint?: string } = {},
): Promise<string> {
  const signing = options.signingKey ? { keyFile: options.signingKey, algorithm: options.algorithm ?? 'RS256' } : undefined;
  await buildWasmBundle({ opa: testOpa(), source, entrypoints: [options.entrypoint ?? 'portcullis/decision'], output, signing });
  return output;
}

/** Unpacks a bundle, lets `edit` change its files (name -> content; delete to drop), and packs it again. */
export async function rewriteBundle(
  input: string,
  output: string,
  edit: (files: Map<string, Buffer>) => void | Promise<void>,
): Promise<string> {
  const work = await scratchDir('rewrite');
  try {
    const unpacked = path.join(work, 'files');
    await mkdir(unpacked);
    await extractTar({ file: input, cwd: unpacked });
    const files = new Map<string, Buffer>();
    for (const entry of await readdir(unpacked, { recursive: true, withFileTypes: true })) {
      if (entry.isFile()) {
        const full = path.join(entry.parentPath, entry.name);
        files.set(path.relative(unpacked, full), await readFile(full));
      }
    }
    await edit(files);
    const packed = path.join(work, 'packed');
    for (const [name, bytes] of files) {
      await mkdir(path.dirname(path.join(packed, name)), { recursive: true });
      await writeFile(path.join(packed, name), bytes);
    }
    await createTar({ gzip: true, file: output, cwd: packed, portable: true }, [...files.keys()]);
    return output;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
