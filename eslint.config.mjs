// ESLint: typescript-eslint's type-checked recommended rules for every TypeScript file, and
// the layering of src/ (conventions: imports only point down). The gateway sequences the
// stages; the stages sit on the HTTP primitives and the base errors; the things beside the
// gateway (the composition root, admin port, CLI, demo, directory service) are never imported
// by what they stand on. `npm test` runs this with --max-warnings 0.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import importX from 'eslint-plugin-import-x';
import { createTypeScriptImportResolver } from 'eslint-import-resolver-typescript';
import globals from 'globals';

const STAGES = ['routes', 'authn', 'directory', 'authz', 'audit', 'proxy'];
const BESIDE_THE_GATEWAY = ['app.ts', 'index.ts', 'admin', 'cli', 'demo', 'directory-service'];
const at = (part) => `./src/${part}`;

/** A zone: modules under `target` may not import modules under any of `parts`. */
const zone = (target, parts, why) => ({ target: at(target), from: parts.map(at), message: why });

const layering = [
  {
    target: at('base'),
    from: './src',
    except: ['./base'],
    message: 'src/base is the bottom layer: it imports no other part of src/.',
  },
  {
    target: at('http'),
    from: './src',
    except: ['./http', './base'],
    message: 'src/http holds the HTTP primitives: it builds on src/base alone.',
  },
  ...STAGES.map((stage) =>
    zone(stage, ['gateway', ...BESIDE_THE_GATEWAY], 'A stage never imports the pipeline (src/gateway) or what stands beside the gateway.'),
  ),
  zone('gateway', BESIDE_THE_GATEWAY, 'The pipeline never imports the composition root, admin port, CLI, demo or directory service.'),
  zone(
    'directory-service',
    ['gateway', 'app.ts', 'index.ts', 'admin', 'cli', 'demo', 'routes', 'authn', 'authz', 'proxy'],
    'The directory service is an upstream of its own: it never imports the gateway or the stages that decide.',
  ),
  ...['config', 'db'].map((part) =>
    zone(part, ['gateway', ...BESIDE_THE_GATEWAY], 'Configuration and database helpers sit below everything that uses them.'),
  ),
];

export default tseslint.config(
  { ignores: ['node_modules/', 'dist/', 'coverage/', '.tools/', '.bench/', '.portcullis/', 'build/'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // `_`-prefixed parameters and destructured leftovers are deliberate.
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', ignoreRestSiblings: true }],
    },
  },
  {
    files: ['src/**/*.ts'],
    plugins: { 'import-x': importX },
    settings: { 'import-x/resolver-next': [createTypeScriptImportResolver({ project: './tsconfig.json' })] },
    rules: { 'import-x/no-restricted-paths': ['error', { zones: layering }] },
  },
  {
    // Plain JavaScript (bin/, test support scripts, this file): no type information.
    files: ['**/*.js', '**/*.mjs', '**/*.cjs'],
    extends: [tseslint.configs.disableTypeChecked],
    languageOptions: { sourceType: 'commonjs', globals: globals.node },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  { files: ['**/*.mjs'], languageOptions: { sourceType: 'module' } },
  {
    // The console's scripts run in the browser, as modules.
    files: ['src/admin/console/static/**/*.js'],
    languageOptions: { sourceType: 'module', globals: globals.browser },
  },
);
