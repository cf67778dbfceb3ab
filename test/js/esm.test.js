'use strict';
// `import` of pagedlm and pagedlm/express resolves to real ESM entries that hand out the very objects
// require() does (one module instance, one addon), and package.json's "exports" gives both a types file.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const ROOT = path.join(__dirname, '..', '..');
const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));

// A program importing and requiring both entries by package name, printing what it found as JSON.
const PROGRAM = `
import { createRequire } from 'node:module';
import * as pagedlm from 'pagedlm';
import * as router from 'pagedlm/express';
import { Engine } from 'pagedlm';
import { createRouter } from 'pagedlm/express';

const require = createRequire(import.meta.url);
const cjs = { pagedlm: require('pagedlm'), router: require('pagedlm/express') };
const compare = (esm, required) => Object.fromEntries(
  Object.keys(esm).filter((name) => name !== 'default').map((name) => [name, esm[name] === required[name]]),
);
console.log(JSON.stringify({
  resolved: { pagedlm: import.meta.resolve('pagedlm'), router: import.meta.resolve('pagedlm/express') },
  pagedlm: compare(pagedlm, cjs.pagedlm),
  router: compare(router, cjs.router),
  defaults: [pagedlm.default === cjs.pagedlm, router.default === cjs.router],
  named: [typeof Engine.load, typeof createRouter],
}));
`;

let dir;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pagedlm-esm-'));
  fs.mkdirSync(path.join(dir, 'node_modules'));
  fs.symlinkSync(ROOT, path.join(dir, 'node_modules', 'pagedlm'), 'dir');
  fs.writeFileSync(path.join(dir, 'program.mjs'), PROGRAM);
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** The names a declaration file exports as values (classes, functions, constants). */
function declaredValues(file) {
  const text = fs.readFileSync(path.join(ROOT, file), 'utf8');
  return [...text.matchAll(/^export (?:declare )?(?:class|function|const) (\w+)/gm)].map((m) => m[1]).sort();
}

test('import resolves to the ESM entries, whose exports are the objects require() gives', () => {
  const run = spawnSync(process.execPath, ['program.mjs'], { cwd: dir, encoding: 'utf8', timeout: 60000 });
  expect(run.stderr).toBe('');
  expect(run.status).toBe(0);
  const found = JSON.parse(run.stdout);
  expect(found.resolved.pagedlm).toMatch(/\/lib\/index\.mjs$/);
  expect(found.resolved.router).toMatch(/\/lib\/express\.mjs$/);
  expect(found.pagedlm).toEqual({ DEFAULT_SAMPLING: true, Engine: true, PagedlmError: true, jsonSchemaToGrammar: true });
  expect(found.router).toEqual({ HttpError: true, createRouter: true });
  expect(found.defaults).toEqual([true, true]);
  expect(found.named).toEqual(['function', 'function']);
});

test('each ESM entry exports by name exactly the values its types declare', () => {
  const esmNames = (file) => {
    const text = fs.readFileSync(path.join(ROOT, file), 'utf8');
    const match = /^export const \{([^}]*)\}/m.exec(text);
    return match[1].split(',').map((name) => name.trim()).filter(Boolean).sort();
  };
  expect(esmNames('lib/index.mjs')).toEqual(declaredValues('lib/index.d.ts'));
  expect(esmNames('lib/express.mjs')).toEqual(declaredValues('lib/express.d.ts'));
});

test('"exports" gives import and require their own entry and types, all of them files the package ships', () => {
  const shipped = (file) => pkg.files.some((entry) => (entry.endsWith('/') ? file.startsWith(`./${entry}`) : file === `./${entry}`));
  for (const subpath of ['.', './express']) {
    const entry = pkg.exports[subpath];
    expect(Object.keys(entry)).toEqual(['import', 'require']);
    for (const condition of ['import', 'require']) {
      // TypeScript takes the first condition that matches, so "types" must come before "default".
      expect(Object.keys(entry[condition])).toEqual(['types', 'default']);
      for (const file of Object.values(entry[condition])) {
        expect(fs.existsSync(path.join(ROOT, file))).toBe(true);
        expect(shipped(file)).toBe(true);
      }
    }
    expect(entry.import.default).toMatch(/\.mjs$/);
    expect(entry.import.types).toMatch(/\.d\.mts$/);
    expect(entry.require.types).toMatch(/\.d\.ts$/);
  }
  expect(pkg.exports['./package.json']).toBe('./package.json');
});

test('the ESM types re-export the CommonJS declarations they sit beside', () => {
  for (const [types, declarations] of [['lib/index.d.mts', './index.js'], ['lib/express.d.mts', './express.js']]) {
    const text = fs.readFileSync(path.join(ROOT, types), 'utf8');
    expect(text).toContain(`export * from '${declarations}';`);
    // './index.js' in a declaration file means the index.d.ts beside it.
    expect(fs.existsSync(path.join(ROOT, 'lib', declarations.replace(/\.js$/, '.d.ts')))).toBe(true);
  }
});
