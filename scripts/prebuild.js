#!/usr/bin/env node
'use strict';
// Puts this machine's prebuilt binaries into prebuilds/<platform>-<arch>/ for `npm pack` (which runs this as
// its prepack script; `npm run build:prebuilds` runs it alone): the addon under the name node-gyp-build looks
// for, and the CUDA kernels library when this build has one. It builds first with cmake-js, as `npm install` does, into build/Release; a build that
// is up to date costs only CMake's check. docs/install.md says how an install chooses between these binaries
// and a build from source.
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const release = path.join(root, 'build', 'Release');
// Named as cmake/cuda.cmake names it (PAGEDLM_CUDA_LIBRARY_FILE_NAME); cmake-js builds with MSVC on Windows.
const KERNELS_LIBRARY = process.platform === 'win32' ? 'pagedlm_kernels.dll' : 'libpagedlm_kernels.so';

// node-gyp-build reads the tags between the dots: `napi` lets one binary serve every Node and Electron version
// with N-API 8; on Linux the C library tag keeps a glibc binary from being chosen on musl (node-gyp-build
// tells the two apart by /etc/alpine-release, so this does the same).
function addonFileName() {
  const tags = ['pagedlm', 'napi'];
  if (process.platform === 'linux') tags.push(fs.existsSync('/etc/alpine-release') ? 'musl' : 'glibc');
  return `${tags.join('.')}.node`;
}

function buildAddon() {
  const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
  execFileSync(process.execPath, [cmakeJs, 'compile', '--CDPAGEDLM_BUILD_TESTS=OFF'], { cwd: root, stdio: 'inherit' });
}

// The kernels library and the addon must come from one build (cuda_entry.h), so a libpagedlm_kernels.so left in
// build/Release by an earlier configuration with CUDA is not shipped: CMake lists the targets of the current
// configuration in TargetDirectories.txt.
function buildHasKernelsLibrary() {
  const targets = path.join(root, 'build', 'CMakeFiles', 'TargetDirectories.txt');
  return fs.existsSync(targets) && /[/\\]pagedlm_kernels\.dir$/m.test(fs.readFileSync(targets, 'utf8'));
}

function copyPrebuilds() {
  const destination = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);
  fs.rmSync(destination, { recursive: true, force: true });
  fs.mkdirSync(destination, { recursive: true });
  const copies = [[path.join(release, 'pagedlm.node'), addonFileName()]];
  if (buildHasKernelsLibrary()) copies.push([path.join(release, KERNELS_LIBRARY), KERNELS_LIBRARY]);
  for (const [from, name] of copies) {
    const to = path.join(destination, name);
    fs.copyFileSync(from, to);
    console.log(`prebuild: ${path.relative(root, to)} (${fs.statSync(to).size} bytes)`);
  }
  return destination;
}

if (require.main === module) {
  buildAddon();
  copyPrebuilds();
}

module.exports = { addonFileName, KERNELS_LIBRARY };
