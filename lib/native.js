'use strict';

const path = require('node:path');

// cmake-js puts the addon in build/Release (or build/Debug for `npm run build:debug`).
const candidates = ['Release', 'Debug'].map((type) => path.join(__dirname, '..', 'build', type, 'pagedlm.node'));

function loadBinding() {
  const failures = [];
  for (const file of candidates) {
    try {
      return require(file);
    } catch (error) {
      if (error.code !== 'MODULE_NOT_FOUND') throw error;
      failures.push(file);
    }
  }
  const error = new Error(
    `pagedlm's native addon is not built (looked for ${failures.join(', ')}): run \`npm install\` or \`npm run build\` in the pagedlm folder`,
  );
  error.code = 'ERR_ADDON_MISSING';
  throw error;
}

module.exports = loadBinding();
