// The policy thread (policy.evaluation: thread, the default) runs the compiled build even when
// the tests run the TypeScript sources: a single `npx jest FILE` after an edit would otherwise
// test the edit on the event loop and the old code in the thread. `npm test` builds first, so
// there this finds the build fresh and does nothing.
import { execFileSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';

/** The newest modification time (ms) of the sources the build compiles: src/**\/*.ts but the tests. */
export function newestSource(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const file = path.join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSource(file));
    else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts')) newest = Math.max(newest, statSync(file).mtimeMs);
  }
  return newest;
}

/** Builds (tsc -p tsconfig.build.json) when dist/ is missing or older than a source; returns whether it built. */
export function ensureFreshBuild(root: string, log: (line: string) => void): boolean {
  const marker = path.join(root, 'dist', 'authz', 'policy-thread.js');
  let built = 0;
  try {
    built = statSync(marker).mtimeMs;
  } catch {
    // no build yet
  }
  if (built >= newestSource(path.join(root, 'src'))) return false;
  log(
    built === 0 ? 'no build in dist/: building it for the policy thread' : 'dist/ is older than src/: rebuilding it for the policy thread',
  );
  const started = Date.now();
  execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', path.join(root, 'tsconfig.build.json')], {
    cwd: root,
    stdio: 'inherit',
  });
  log(`built in ${Date.now() - started} ms`);
  return true;
}
