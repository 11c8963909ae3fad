// Runs once before every test file: makes sure the build the policy thread runs is fresh and
// the OPA toolchain exists, compiles the shipped policies, and prepares a migrated template
// database that each suite clones.
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { buildWasmBundle, resolveOpa } from '../../src/authz/opa-toolchain';
import { createDatabase, migrateToLatest } from '../../src/db/database';
import { EmbeddedDatabase } from '../../src/db/embedded-database';
import { projectRoot } from '../../src/project-root';
import { ensureFreshBuild } from './fresh-build';
import { TEMPLATE_DATABASE, withDatabaseName } from './test-database';

declare global {
  var __PORTCULLIS_EMBEDDED__: EmbeddedDatabase | undefined;
}

export default async function globalSetup(): Promise<void> {
  const log = (line: string) => process.stderr.write(`[test setup] ${line}\n`);
  ensureFreshBuild(projectRoot, log);
  const scratch = await mkdtemp(path.join(os.tmpdir(), 'portcullis-test-'));

  const opa = await resolveOpa({ opaBin: process.env.OPA_BIN, searchPath: process.env.PATH, log });
  const bundle = await buildWasmBundle({
    opa,
    source: path.join(projectRoot, 'policies'),
    entrypoints: ['portcullis/decision'],
    output: path.join(scratch, 'bundle.tar.gz'),
  });
  process.env.PORTCULLIS_TEST_OPA = opa;
  process.env.PORTCULLIS_TEST_BUNDLE = bundle.output;
  process.env.PORTCULLIS_TEST_SCRATCH = scratch;

  let adminUrl = process.env.TEST_DATABASE_URL;
  if (!adminUrl) {
    const started = Date.now();
    const embedded = await EmbeddedDatabase.create({ dataDir: path.join(scratch, 'pgdata') });
    globalThis.__PORTCULLIS_EMBEDDED__ = embedded;
    adminUrl = embedded.url;
    log(`embedded PostgreSQL ready in ${Date.now() - started} ms`);
  }
  process.env.PORTCULLIS_TEST_DATABASE_URL = adminUrl;

  const admin = createDatabase({ url: adminUrl });
  try {
    await admin.raw(`drop database if exists ${TEMPLATE_DATABASE} with (force)`);
    await admin.raw(`create database ${TEMPLATE_DATABASE}`);
  } finally {
    await admin.destroy();
  }
  const template = createDatabase({ url: withDatabaseName(adminUrl, TEMPLATE_DATABASE) });
  try {
    await migrateToLatest(template);
  } finally {
    await template.destroy();
  }
}
