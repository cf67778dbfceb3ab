'use strict';
// Every JavaScript snippet in README.md runs as written. Each ```js / ```javascript / ```mjs block is written
// to a scratch folder whose node_modules/pagedlm links to this repository, so `require('pagedlm')` and
// `import ... from 'pagedlm'` load the code under test, and runs in its own Node process with MODEL set to a
// test model. A block whose info string carries `no-run` (a server that listens until stopped, an Electron
// app) is only syntax-checked: its first line says why it does not run.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { describeWithModels } = require('../support/models');

const ROOT = path.join(__dirname, '..', '..');
const README = path.join(ROOT, 'README.md');
const JS_LANGUAGES = new Set(['js', 'javascript', 'mjs']);

/** The JavaScript blocks of a Markdown text: { language, runs, code, line }. */
function jsSnippets(markdown) {
  const snippets = [];
  const fence = /^```(\S*)([^\n]*)\n([\s\S]*?)^```\s*$/gm;
  for (const match of markdown.matchAll(fence)) {
    const language = match[1].toLowerCase();
    if (!JS_LANGUAGES.has(language)) continue;
    const line = markdown.slice(0, match.index).split('\n').length;
    snippets.push({ language, runs: !/\bno-run\b/.test(match[2]), code: match[3], line });
  }
  return snippets;
}

// ESM when the fence says mjs or the code imports: a CommonJS snippet must work as a .js file.
const isModule = (snippet) => snippet.language === 'mjs' || /^\s*(import|export)\s/m.test(snippet.code);

/** A scratch folder where `pagedlm` resolves to this repository. */
function scratchProject() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pagedlm-readme-'));
  fs.mkdirSync(path.join(dir, 'node_modules'));
  fs.symlinkSync(ROOT, path.join(dir, 'node_modules', 'pagedlm'), 'dir');
  return dir;
}

function writeSnippet(dir, snippet, name) {
  const file = path.join(dir, `${name}${isModule(snippet) ? '.mjs' : '.js'}`);
  fs.writeFileSync(file, snippet.code);
  return file;
}

function runSnippet(dir, file, model) {
  return spawnSync(process.execPath, [file], {
    cwd: dir,
    encoding: 'utf8',
    timeout: 60000,
    env: { ...process.env, MODEL: model },
  });
}

const snippets = jsSnippets(fs.readFileSync(README, 'utf8'));

describe('README snippets', () => {
  test('the README is a front door: under 300 lines, depth in docs/', () => {
    const readme = fs.readFileSync(README, 'utf8');
    expect(readme.split('\n').length).toBeLessThan(300);
    for (const [, link] of readme.matchAll(/\]\((docs\/[^)#]+)/g)) expect(fs.existsSync(path.join(ROOT, link))).toBe(true);
  });

  test('the README has runnable CommonJS and ESM snippets, and every not-run one says why', () => {
    expect(snippets.filter((s) => s.runs && !isModule(s)).length).toBeGreaterThanOrEqual(1);
    expect(snippets.filter((s) => s.runs && isModule(s)).length).toBeGreaterThanOrEqual(1);
    for (const s of snippets.filter((x) => !x.runs)) expect(s.code.split('\n')[0]).toMatch(/^\/\/ no-run: \S/);
  });

  test.each(snippets.filter((s) => !s.runs).map((s) => [s.line, s]))('README.md:%i is valid JavaScript', (_, snippet) => {
    const dir = scratchProject();
    try {
      const out = spawnSync(process.execPath, ['--check', writeSnippet(dir, snippet, 'snippet')], { encoding: 'utf8' });
      expect(out.stderr).toBe('');
      expect(out.status).toBe(0);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describeWithModels('README snippets run as written', ['aidreams260K.gguf'], (model) => {
  let dir;
  beforeAll(() => {
    dir = scratchProject();
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test.each(snippets.filter((s) => s.runs).map((s) => [s.line, s]))('README.md:%i', (line, snippet) => {
    const out = runSnippet(dir, writeSnippet(dir, snippet, `line-${line}`), model);
    expect(out.stderr).toBe('');
    expect(out.status).toBe(0);
    expect(out.stdout.length).toBeGreaterThan(0);
  });

  // The harness itself must be able to fail: the mistake the quick start warns about, and a wrong call.
  test.each([
    ['top-level await in a CommonJS file', "const { Engine } = require('pagedlm');\nconst engine = await Engine.load(process.env.MODEL);\n"],
    ['a call that does not exist', "import { Engine } from 'pagedlm';\nconst engine = await Engine.load(process.env.MODEL);\nawait engine.complete('hi');\n"],
  ])('a broken snippet fails: %s', (name, code) => {
    const [snippet] = jsSnippets(`\`\`\`js\n${code}\`\`\`\n`);
    const out = runSnippet(dir, writeSnippet(dir, snippet, name.replace(/\W+/g, '-')), model);
    expect(out.status).not.toBe(0);
    expect(out.stderr).not.toBe('');
  });
});
