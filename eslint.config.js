// Lint runs as part of `npm test`. Type-aware rules come from typescript-eslint,
// which supports TypeScript 5.x (pinned in package.json for that reason).
import js from '@eslint/js'
import tseslint from 'typescript-eslint'
import { readFileSync } from 'node:fs'
import { URL } from 'node:url'

// The layer order (tools/layers.json): a folder may import only folders of a lower rank.
const RANKS = JSON.parse(
  readFileSync(new URL('./tools/layers.json', import.meta.url), 'utf8'),
).ranks
const forbiddenFor = (folder) =>
  Object.keys(RANKS).filter((other) => other !== folder && RANKS[other] >= RANKS[folder])

// One block per folder of src/.
// A relative import that climbs out of the folder and names a forbidden folder fails lint.
const layerBlocks = Object.keys(RANKS).map((folder) => {
  const names = forbiddenFor(folder).join('|')
  return {
    files: [`src/${folder}/**/*.ts`, `src/${folder}.ts`],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              regex: `^(\\.\\./)+(${names}|index)(/|\\.js$)`,
              message: `src/${folder} may import only lower layers (tools/layers.json): abi, util → errors → protocol, engine → server, client → migrate, frontends → cli.`,
            },
          ],
        },
      ],
    },
  }
})

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'build/**', 'tools/**/*.mjs'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/switch-exhaustiveness-check': 'error',
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  {
    // Size limits for shipped code: one concern per file, functions a reader can hold.
    files: ['src/**/*.ts'],
    rules: {
      'max-lines': ['error', { max: 450 }],
      'max-lines-per-function': ['error', { max: 100, skipBlankLines: true, skipComments: true }],
    },
  },
  ...layerBlocks,
  {
    files: ['eslint.config.js'],
    extends: [tseslint.configs.disableTypeChecked],
  },
)
