// Lints source texts as if they were modules at the given paths of the project, with the
// project's own eslint.config.mjs, and prints each one's messages as JSON. test/layering.test.ts
// runs it as a child process: Jest's module sandbox cannot load an ES-module config.
//
// The probes are not files of the TypeScript project, so they are linted without type
// information (typescript-eslint's disableTypeChecked); and import-x/no-unresolved is on, so
// that an import the resolver cannot follow shows up instead of passing the layering unchecked.
import { ESLint } from 'eslint';
import tseslint from 'typescript-eslint';

/** @type {{ filePath: string; code: string }[]} */
const probes = JSON.parse(await new Response(process.stdin).text());
const eslint = new ESLint({
  cwd: process.cwd(),
  overrideConfig: [tseslint.configs.disableTypeChecked, { files: ['src/**/*.ts'], rules: { 'import-x/no-unresolved': 'error' } }],
});
const results = [];
for (const { filePath, code } of probes) {
  const [result] = await eslint.lintText(code, { filePath });
  results.push(result.messages.map(({ ruleId, line, message }) => ({ ruleId, line, message })));
}
process.stdout.write(JSON.stringify(results));
