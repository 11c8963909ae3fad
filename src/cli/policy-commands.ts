// `policy build`, `policy test` and `policy disagreements`: what a policy author runs on their Rego.
import { rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { signingAlgorithmFor } from '../authz/bundle-signature';
import { buildWasmBundle, resolveOpa } from '../authz/opa-toolchain';
import type { CliContext } from './cli-context';
import { registerPolicyDisagreementsCommand } from './policy-disagreements';
import { loadBuiltBundle, runPolicyTests } from './policy-test';

export function registerPolicyCommands(program: Command, ctx: CliContext): void {
  const { io } = ctx;
  const policy = program.command('policy').description("build and test Rego policies, and read the shadow policy's disagreements");
  policy
    .command('build')
    .description('compile policies to an OPA WebAssembly bundle (opa build -t wasm)')
    .option('-s, --source <dir>', 'policy directory', 'policies')
    .option('-o, --output <file>', 'bundle to write', path.join('build', 'bundle.tar.gz'))
    .option('-e, --entrypoint <path>', 'entrypoint', 'portcullis/decision')
    .option('--signing-key <file>', 'PEM private key (RSA or EC): sign the bundle (.signatures.json) for policy.verification')
    .action(async (options: { source: string; output: string; entrypoint: string; signingKey?: string }) => {
      const keyFile = options.signingKey ? path.resolve(io.cwd, options.signingKey) : undefined;
      const signing = keyFile ? { keyFile, algorithm: await signingAlgorithmFor(keyFile) } : undefined;
      const opa = await resolveOpa(ctx.toolchain());
      const source = path.resolve(io.cwd, options.source);
      const output = path.resolve(io.cwd, options.output);
      // Written beside the output and renamed over it once it loads: a refused build leaves the previous bundle as it was.
      const candidate = `${output}.${process.pid}.tmp`;
      const started = Date.now();
      let revision: string;
      try {
        ({ revision } = await buildWasmBundle({ opa, source, entrypoints: [options.entrypoint], output: candidate, signing }));
        // Loaded as the gateway would: a built-in the WebAssembly runtime lacks is refused now, not per request.
        await loadBuiltBundle(candidate, source, options.entrypoint, io.cwd);
        await rename(candidate, output);
      } finally {
        await rm(candidate, { force: true });
      }
      const signed = signing ? `, signed ${signing.algorithm}` : '';
      io.out(`built ${path.relative(io.cwd, output) || output} (revision ${revision}${signed}) in ${Date.now() - started} ms`);
    });
  policy
    .command('test')
    .description('opa check --strict, opa fmt --list, a WebAssembly build the gateway loads, and opa test with coverage per file')
    .option('-s, --source <dir>', 'policy directory', 'policies')
    .option('-e, --entrypoint <path>', 'entrypoint the WebAssembly build must load', 'portcullis/decision')
    .option('--min-coverage <percent>', 'fail when a policy file (tests left out) is covered less', '90')
    .option('-v, --verbose', 'list every test, not only the failures')
    .action(async (options: { source: string; entrypoint: string; minCoverage: string; verbose?: boolean }) => {
      const opa = await resolveOpa(ctx.toolchain());
      const source = path.resolve(io.cwd, options.source);
      const ok = await runPolicyTests({
        opa,
        source,
        entrypoint: options.entrypoint,
        minCoverage: Number(options.minCoverage),
        verbose: options.verbose === true,
        cwd: io.cwd,
        out: io.out,
        err: io.err,
      });
      ctx.setExitCode(ok ? 0 : 1);
    });
  registerPolicyDisagreementsCommand(policy, ctx);
}
