'use strict';
// Shared test models (../shared/models, or PAGEDLM_MODELS_DIR); suites that need them skip when absent.
const fs = require('node:fs');
const path = require('node:path');

const modelsDir = process.env.PAGEDLM_MODELS_DIR || path.join(__dirname, '..', '..', '..', 'shared', 'models');

function sharedModel(name) {
  const file = path.join(modelsDir, name);
  return fs.existsSync(file) ? file : null;
}

/** `describe` when every named model exists, else a skipped suite whose title says why. */
function describeWithModels(title, names, body) {
  const paths = names.map(sharedModel);
  if (paths.some((p) => p === null)) {
    describe.skip(`${title} (skipped: shared test models ${names.join(', ')} not found in ${modelsDir})`, () => {
      test('skipped', () => {});
    });
    return;
  }
  describe(title, () => body(...paths));
}

module.exports = { sharedModel, describeWithModels, modelsDir };
