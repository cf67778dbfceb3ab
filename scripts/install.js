#!/usr/bin/env node
'use strict';
// package.json's install script. A package from npm carries prebuilt binaries (prebuilds/, written by
// scripts/prebuild.js when it was packed); when one matches this platform and loads, nothing is compiled.
// Otherwise, or when asked (`npm install --build-from-source`, or PAGEDLM_BUILD_FROM_SOURCE=1), cmake-js builds
// the addon from the shipped sources into build/Release, which needs a C++20 compiler and CMake. A git
// checkout always builds: the sources there may be newer than a prebuilds/ left by an earlier `npm pack`.
// docs/install.md has the details.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');

function buildFromSourceAsked(env) {
  // npm passes `--build-from-source` to install scripts as npm_config_build_from_source.
  return env.npm_config_build_from_source === 'true' || env.PAGEDLM_BUILD_FROM_SOURCE === '1';
}

// The prebuilt addon node-gyp-build picks for this platform, or why there is none. It is loaded, not only
// matched by name: a binary built against a newer C or C++ library than this machine's fails here, and then
// a build from source is the way to a working addon.
function loadablePrebuilt() {
  process.env.PREBUILDS_ONLY = '1'; // read once, when node-gyp-build is required: a build/ folder is not a prebuilt
  const nodeGypBuild = require('node-gyp-build');
  let file;
  try {
    file = nodeGypBuild.resolve(root);
  } catch {
    return { why: `no prebuilt binary for ${process.platform}-${process.arch} in this package` };
  }
  try {
    require(file);
    return { file };
  } catch (error) {
    return { why: `${path.relative(root, file)} does not load here (${error.message.split('\n')[0]})` };
  }
}

function buildFromSource() {
  const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
  const result = spawnSync(process.execPath, [cmakeJs, 'compile', '--CDPAGEDLM_BUILD_TESTS=OFF'], { cwd: root, stdio: 'inherit' });
  if (result.status !== 0) {
    console.error('pagedlm: building the addon from source failed; it needs a C++20 compiler, CMake >= 3.20 and '
      + 'nlohmann/json (docs/install.md)');
  }
  return result.status ?? 1;
}

function main() {
  if (buildFromSourceAsked(process.env)) {
    console.log('pagedlm: building the addon from source, as asked');
    return buildFromSource();
  }
  if (fs.existsSync(path.join(root, '.git'))) {
    console.log('pagedlm: building the addon from source in this git checkout');
    return buildFromSource();
  }
  const prebuilt = loadablePrebuilt();
  if (prebuilt.file) {
    console.log(`pagedlm: using the prebuilt addon ${path.relative(root, prebuilt.file)}`);
    return 0;
  }
  console.log(`pagedlm: building the addon from source: ${prebuilt.why}`);
  return buildFromSource();
}

process.exitCode = main();
