#!/usr/bin/env node
'use strict';
// The package as a user gets it: `npm pack` (its prepack script puts this machine's binaries in prebuilds/),
// then the tarball installed into an empty folder whose PATH reaches node and npm but no compiler and no
// CMake, so only a prebuilt binary can make it work; then it loads and generates a few tokens, under this
// Node and under a second Node major installed from npm's node-<platform>-<arch> package, with the same
// prebuilt binary (N-API: one binary for every Node from its floor); last, `npm rebuild --build-from-source`
// must try a source build. scripts/test.js runs it after Jest (`npm run test:pack` alone); it returns the
// parts it skipped, with why.
const { execFileSync, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { addonFileName, KERNELS_LIBRARY } = require('./prebuild');
const { sharedModel, modelsDir } = require('../test/support/models');

const root = path.join(__dirname, '..');
const MODEL = 'aidreams260K.gguf';
// The shared models' README: greedy ids and text after 'A neural network'.
const EXPECTED = { tokens: [431, 279, 438, 349, 261, 446, 299, 303], text: 's flower, as I' };
const TOOLS_THAT_BUILD = ['cc', 'c++', 'gcc', 'g++', 'clang', 'clang++', 'cmake', 'make', 'ninja'];

// The environment of an npm run by hand: without the variables the npm running this script (`npm test`)
// hands its children, which describe this repository (npm_package_*, npm_config_local_prefix, ...) and
// would leak into the npm commands run here; the registry, cache and user config choices are kept.
function cleanEnv(extra = {}) {
  const kept = /^npm_config_(registry|cache|userconfig)$/i;
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^npm_/i.test(key) || kept.test(key)));
  delete env.INIT_CWD;
  return { ...env, ...extra };
}

function findOnPath(name) {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const file = path.join(dir, name);
    if (dir && fs.existsSync(file)) return file;
  }
  throw new Error(`the pack test needs ${name} on PATH`);
}

// A folder for PATH holding node, npm and sh (npm runs install scripts through sh) and nothing else.
function pathWithoutCompilers(tmp) {
  const bin = path.join(tmp, 'bin');
  fs.mkdirSync(bin);
  fs.symlinkSync(process.execPath, path.join(bin, 'node'));
  fs.symlinkSync(fs.realpathSync(findOnPath('npm')), path.join(bin, 'npm'));
  fs.symlinkSync(findOnPath('sh'), path.join(bin, 'sh'));
  const found = TOOLS_THAT_BUILD.filter((tool) => spawnSync('sh', ['-c', `command -v ${tool}`], { env: { PATH: bin } }).status === 0);
  if (found.length > 0) throw new Error(`the stripped PATH still reaches ${found.join(', ')}`);
  return bin;
}

function step(title, fn) {
  const start = Date.now();
  console.log(`\npack test: ${title}`);
  const result = fn();
  console.log(`pack test: ${title}: done in ${((Date.now() - start) / 1000).toFixed(1)} s`);
  return result;
}

function pack(tmp) {
  const hadPrebuilds = fs.existsSync(path.join(root, 'prebuilds'));
  try {
    execFileSync('npm', ['pack', '--pack-destination', tmp, '--loglevel=warn'], { cwd: root, stdio: 'inherit', env: cleanEnv() });
  } finally {
    // prepack writes prebuilds/ into the checkout: leave the checkout as it was found.
    if (!hadPrebuilds) fs.rmSync(path.join(root, 'prebuilds'), { recursive: true, force: true });
  }
  const tarball = fs.readdirSync(tmp).find((name) => name.endsWith('.tgz'));
  if (!tarball) throw new Error(`npm pack wrote no tarball into ${tmp}`);
  const listing = execFileSync('tar', ['-tzf', path.join(tmp, tarball)], { encoding: 'utf8' }).split('\n');
  const prebuilt = `package/prebuilds/${process.platform}-${process.arch}/${addonFileName()}`;
  for (const needed of [prebuilt, 'package/scripts/install.js', 'package/CMakeLists.txt', 'package/native/addon/addon.cpp']) {
    if (!listing.includes(needed)) throw new Error(`the tarball lacks ${needed}`);
  }
  return { tarball: path.join(tmp, tarball), shipsKernels: listing.includes(path.posix.join(path.posix.dirname(prebuilt), KERNELS_LIBRARY)) };
}

function installIntoEmptyFolder(tmp, tarball, bin) {
  const app = path.join(tmp, 'app');
  fs.mkdirSync(app);
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'pack-test-app', version: '1.0.0', private: true }));
  // Dependencies come from npm's cache when they are there (CI's `npm ci` has just filled it).
  const output = execFileSync('npm', ['install', tarball, '--prefer-offline', '--no-audit', '--no-fund', '--foreground-scripts'], {
    cwd: app, encoding: 'utf8', env: cleanEnv({ PATH: bin }), stdio: ['ignore', 'pipe', 'inherit'],
  });
  process.stdout.write(output);
  if (!/pagedlm: using the prebuilt addon/.test(output)) throw new Error('the install script did not report using the prebuilt addon');
  const installed = path.join(app, 'node_modules', 'pagedlm');
  if (fs.existsSync(path.join(installed, 'build'))) throw new Error(`the install compiled something: ${path.join(installed, 'build')} exists`);
  return app;
}

// npm hands `--build-from-source` to the install script, which then compiles even though a prebuilt binary
// loads; with no compiler on PATH that build fails, which is how this shows it was attempted.
function rebuildFromSourceWhenAsked(app, bin) {
  const rebuild = spawnSync('npm', ['rebuild', 'pagedlm', '--build-from-source', '--foreground-scripts'], {
    cwd: app, encoding: 'utf8', env: cleanEnv({ PATH: bin }),
  });
  const output = rebuild.stdout + rebuild.stderr;
  if (!output.includes('pagedlm: building the addon from source, as asked') || rebuild.status === 0) {
    throw new Error(`npm rebuild --build-from-source did not try a source build (status ${rebuild.status}):\n${output}`);
  }
}

// Run in the installed app with `node` (this one, or the second major): which addon file loaded, and the
// greedy output when the model is given.
const USE_PACKAGE = `
const path = require('node:path');
const { Engine } = require('pagedlm');
const packageDir = path.dirname(require.resolve('pagedlm/package.json'));
const addon = require(require.resolve('node-gyp-build', { paths: [packageDir] })).resolve(packageDir);
const report = { node: process.version, addon: path.relative(packageDir, addon) };
(async () => {
  const model = process.argv[1];
  if (model) {
    const engine = await Engine.load(model, { threads: 1 });
    const result = await engine.generate('A neural network', { temperature: 0, maxTokens: ${EXPECTED.tokens.length} });
    Object.assign(report, { tokens: result.tokens, text: result.text, backendReason: engine.info().backendReason });
    await engine.close();
  }
  console.log(JSON.stringify(report));
})().catch((error) => { console.error(error); process.exit(1); });`;

function usePackage(node, app, bin, model) {
  const output = execFileSync(node, ['-e', USE_PACKAGE, model ?? ''], { cwd: app, encoding: 'utf8', env: cleanEnv({ PATH: bin }) });
  const report = JSON.parse(output.trim().split('\n').pop());
  console.log(`pack test: ${JSON.stringify(report)}`);
  return report;
}

function checkReport(report, { node, shipsKernels, model }) {
  const prebuilt = path.join('prebuilds', `${process.platform}-${process.arch}`, addonFileName());
  if (report.addon !== prebuilt) throw new Error(`${node} loaded ${report.addon}, not the prebuilt ${prebuilt}`);
  if (!model) return;
  if (JSON.stringify(report.tokens) !== JSON.stringify(EXPECTED.tokens) || report.text !== EXPECTED.text) {
    throw new Error(`${node} generated ${JSON.stringify(report.tokens)} (${JSON.stringify(report.text)}), expected ${JSON.stringify(EXPECTED.tokens)}`);
  }
  // Beside the prebuilt addon, the kernels library is found; it may still fail to open on a machine without
  // CUDA's own libraries, and then the reason names those, not it.
  if (shipsKernels && new RegExp(`${KERNELS_LIBRARY.replace(/\./g, '\\.')}: cannot open`).test(report.backendReason)) {
    throw new Error(`the prebuilt addon did not find the ${KERNELS_LIBRARY} beside it: ${report.backendReason}`);
  }
}

// A Node of another major from npm's node-<platform>-<arch> package, kept in the temp folder across runs.
function secondNode() {
  const running = Number(process.versions.node.split('.')[0]);
  const major = running === 22 ? 20 : 22;
  const platform = process.platform === 'win32' ? 'win' : process.platform;
  const name = `node-${platform}-${process.arch}`;
  const prefix = path.join(os.tmpdir(), `pagedlm-${name}-${major}`);
  const node = path.join(prefix, 'node_modules', name, 'bin', 'node');
  const works = () => spawnSync(node, ['--version'], { encoding: 'utf8' }).stdout?.startsWith(`v${major}.`);
  if (works()) return { node };
  fs.rmSync(prefix, { recursive: true, force: true });
  fs.mkdirSync(prefix, { recursive: true });
  const install = spawnSync('npm', ['install', '--prefix', prefix, '--no-save', '--no-package-lock', '--ignore-scripts', '--no-audit', '--no-fund', `${name}@${major}`],
    { encoding: 'utf8', env: cleanEnv() });
  if (install.status !== 0 || !works()) {
    const why = (install.stderr || install.error?.message || `${node} does not run`).trim().split('\n').slice(-3).join(' ');
    return { skip: `Node ${major} could not be installed from npm (${name}@${major}): ${why}` };
  }
  return { node };
}

function packTest() {
  const skipped = [];
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'pagedlm-pack-'));
  try {
    const model = sharedModel(MODEL);
    if (!model) skipped.push({ suite: 'pack test: generate with the installed package', why: `shared test model ${MODEL} not found in ${modelsDir}` });
    const bin = pathWithoutCompilers(tmp);
    const { tarball, shipsKernels } = step('npm pack', () => pack(tmp));
    const app = step('install the tarball with no compiler or CMake on PATH', () => installIntoEmptyFolder(tmp, tarball, bin));
    step(`load${model ? ' and generate' : ''} under Node ${process.versions.node}`, () => {
      checkReport(usePackage(process.execPath, app, bin, model), { node: `Node ${process.versions.node}`, shipsKernels, model });
    });
    const second = step('install a second Node major from npm', secondNode);
    if (second.skip) {
      skipped.push({ suite: 'pack test: the prebuilt addon under a second Node major', why: second.skip });
    } else {
      const version = execFileSync(second.node, ['--version'], { encoding: 'utf8' }).trim();
      step(`the same prebuilt addon under Node ${version}`, () => {
        const report = usePackage(second.node, app, bin, model);
        if (report.node.split('.')[0] === `v${process.versions.node.split('.')[0]}`) throw new Error(`the second Node is the same major: ${report.node}`);
        checkReport(report, { node: `Node ${report.node}`, shipsKernels, model });
      });
    }
    step('npm rebuild --build-from-source tries a source build despite the prebuilt binary', () => rebuildFromSourceWhenAsked(app, bin));
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  return skipped;
}

if (require.main === module) {
  const skipped = packTest();
  for (const { suite, why } of skipped) console.log(`skipped: ${suite}: ${why}`);
}

module.exports = { packTest, secondNode };
