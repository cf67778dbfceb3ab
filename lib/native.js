'use strict';

const path = require('node:path');
const nodeGypBuild = require('node-gyp-build');

const packageRoot = path.join(__dirname, '..');

// node-gyp-build picks the addon built here (build/Release, then build/Debug for `npm run build:debug`), else
// the prebuilt binary for this platform that the package carries (prebuilds/<platform>-<arch>/).
function loadBinding() {
  let file;
  try {
    file = nodeGypBuild.resolve(packageRoot);
  } catch (cause) {
    const error = new Error(
      `pagedlm's native addon is not built and the package has no prebuilt binary for ${process.platform}-${process.arch} `
      + `(looked in ${path.join(packageRoot, 'build')} and ${path.join(packageRoot, 'prebuilds')}): `
      + 'run `npm install --build-from-source` or `npm run build` in the pagedlm folder',
      { cause },
    );
    error.code = 'ERR_ADDON_MISSING';
    throw error;
  }
  return require(file);
}

module.exports = loadBinding();
