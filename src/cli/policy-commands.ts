// `policy build` and `policy test`: what a policy author runs on their Rego.
import path from 'node:path';
import type { Command } from 'commander';
import { signingAlgorithmFor } from '../authz/bundle-signature';
import { buildWasmBundle, resolveOpa } from '../authz/opa-toolchain';
import type { CliContext } from './cli-context';
import { runPolicyTests } from './policy-test';

export function registerPolicyCommands(program: Command, ctx: CliContext): void {
  const { io } = ctx;
  const policy = program.command('policy').description('build and test Rego policies');
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
      const started = Date.now();
      const { output, revision } = await buildWasmBundle({
        opa,
        source: path.resolve(io.cwd, options.source),
        entrypoints: [options.entrypoint],
        output: path.resolve(io.cwd, options.output),
        signing,
      });
      const signed = signing ? `, signed ${signing.algorithm}` : '';
      io.out(`built ${path.relative(io.cwd, output) || output} (revision ${revision}${signed}) in ${Date.now() - started} ms`);
    });
  policy
    .command('test')
    .description('opa check --strict, opa fmt --list and opa test --coverage over the policies')
    .option('-s, --source <dir>', 'policy directory', 'policies')
    .option('--min-coverage <percent>', 'fail below this coverage', '90')
    .action(async (options: { source: string; minCoverage: string }) => {
      const opa = await resolveOpa(ctx.toolchain());
      const source = path.resolve(io.cwd, options.source);
      const ok = await runPolicyTests({ opa, source, minCoverage: Number(options.minCoverage), out: io.out, err: io.err });
      ctx.setExitCode(ok ? 0 : 1);
    });
}
