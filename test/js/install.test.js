'use strict';
// How an installed package finds its addon: the install script's choice between a prebuilt binary and a
// build from source (scripts/install.js), and lib/native.js's lookup through node-gyp-build. Each case is a
// scratch copy of the package whose PATH reaches node and nothing that builds, so choosing a build from source
// shows as cmake-js failing to find a compiler instead of a long compile. scripts/pack-test.js installs the
// real tarball.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { addonFileName } = require('../../scripts/prebuild');

const ROOT = path.join(__dirname, '..', '..');
const BUILT_ADDON = path.join(ROOT, 'build', 'Release', 'pagedlm.node');
const PREBUILDS = path.join('prebuilds', `${process.platform}-${process.arch}`);

let scratch;
beforeEach(() => {
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'pagedlm-install-'));
  const pkg = path.join(scratch, 'pkg');
  fs.mkdirSync(path.join(pkg, 'scripts'), { recursive: true });
  fs.copyFileSync(path.join(ROOT, 'scripts', 'install.js'), path.join(pkg, 'scripts', 'install.js'));
  fs.cpSync(path.join(ROOT, 'lib'), path.join(pkg, 'lib'), { recursive: true });
  fs.writeFileSync(path.join(pkg, 'package.json'), JSON.stringify({ name: 'pagedlm' }));
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(pkg, 'node_modules'), 'dir');
  fs.mkdirSync(path.join(scratch, 'bin'));
  fs.symlinkSync(process.execPath, path.join(scratch, 'bin', 'node'));
});
afterEach(() => fs.rmSync(scratch, { recursive: true, force: true }));

function place(relative, from) {
  const file = path.join(scratch, 'pkg', relative);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  if (from) fs.copyFileSync(from, file);
  else fs.writeFileSync(file, 'not a shared library');
}

function runInPackage(args, env = {}) {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^(npm_config_build_from_source|PAGEDLM_)/i.test(key)));
  const result = spawnSync(process.execPath, args, {
    cwd: path.join(scratch, 'pkg'), encoding: 'utf8', env: { ...clean, PATH: path.join(scratch, 'bin'), ...env },
  });
  return { status: result.status, output: result.stdout + result.stderr };
}

const install = (env) => runInPackage(['scripts/install.js'], env);

describe('the install script', () => {
  test('uses a prebuilt binary that loads, and compiles nothing', () => {
    place(path.join(PREBUILDS, addonFileName()), BUILT_ADDON);
    const { status, output } = install();
    expect(output).toContain(`pagedlm: using the prebuilt addon ${path.join(PREBUILDS, addonFileName())}`);
    expect(status).toBe(0);
    expect(fs.existsSync(path.join(scratch, 'pkg', 'build'))).toBe(false);
  });

  test('builds from source when the package has no prebuilt binary for this platform', () => {
    const { status, output } = install();
    expect(output).toContain(`pagedlm: building the addon from source: no prebuilt binary for ${process.platform}-${process.arch}`);
    expect(output).toMatch(/building the addon from source failed; it needs a C\+\+20 compiler, CMake/);
    expect(status).not.toBe(0);
  });

  test('builds from source in a git checkout, whose sources may be newer than its prebuilds/', () => {
    place(path.join(PREBUILDS, addonFileName()), BUILT_ADDON);
    fs.mkdirSync(path.join(scratch, 'pkg', '.git'));
    const { status, output } = install();
    expect(output).toContain('pagedlm: building the addon from source in this git checkout');
    expect(status).not.toBe(0);
  });

  test('builds from source when the matching prebuilt binary does not load here, saying why', () => {
    place(path.join(PREBUILDS, addonFileName()));
    const { status, output } = install();
    expect(output).toMatch(new RegExp(`building the addon from source: ${path.join(PREBUILDS, addonFileName()).replace(/[.+]/g, '\\$&')} does not load here \\(.+\\)`));
    expect(status).not.toBe(0);
  });

  test.each([
    ['npm install --build-from-source', { npm_config_build_from_source: 'true' }],
    ['PAGEDLM_BUILD_FROM_SOURCE=1', { PAGEDLM_BUILD_FROM_SOURCE: '1' }],
  ])('builds from source when asked (%s), even with a prebuilt binary that loads', (_, env) => {
    place(path.join(PREBUILDS, addonFileName()), BUILT_ADDON);
    const { status, output } = install(env);
    expect(output).toContain('pagedlm: building the addon from source, as asked');
    expect(status).not.toBe(0);
  });
});

describe('lib/native.js', () => {
  const loadNative = () => runInPackage(['-e', "require('./lib/native'); console.log('loaded')"]);

  test('with neither a build nor a prebuilt binary: ERR_ADDON_MISSING naming both places and what to run', () => {
    const { status, output } = runInPackage(['-e', `
      try { require('./lib/native'); } catch (error) { console.log(error.code + ': ' + error.message); }`]);
    expect(status).toBe(0);
    expect(output).toMatch(/^ERR_ADDON_MISSING: pagedlm's native addon is not built and the package has no prebuilt binary/);
    expect(output).toContain(path.join(scratch, 'pkg', 'build'));
    expect(output).toContain(path.join(scratch, 'pkg', 'prebuilds'));
    expect(output).toContain('npm install --build-from-source');
  });

  test('loads the prebuilt binary when nothing was built here', () => {
    place(path.join(PREBUILDS, addonFileName()), BUILT_ADDON);
    expect(loadNative()).toMatchObject({ status: 0, output: 'loaded\n' });
  });

  test('prefers the addon built here (build/Release) over a prebuilt binary', () => {
    place(path.join(PREBUILDS, addonFileName()));
    place(path.join('build', 'Release', 'pagedlm.node'), BUILT_ADDON);
    expect(loadNative()).toMatchObject({ status: 0, output: 'loaded\n' });
  });

  test('a prebuilt binary that does not load is an error that names it, not ERR_ADDON_MISSING', () => {
    place(path.join(PREBUILDS, addonFileName()));
    const { status, output } = loadNative();
    expect(status).not.toBe(0);
    expect(output).toContain(path.join(scratch, 'pkg', PREBUILDS, addonFileName()));
    expect(output).not.toContain('ERR_ADDON_MISSING');
  });
});
