'use strict';
// native/tokenizer/unicode_tables.cpp is generated and committed: it must be what the generator writes from
// the Unicode Character Database it names. Runs where Debian's unicode-data package (or PAGEDLM_UCD_DIR) holds
// that same Unicode version; elsewhere it skips and says why.
const fs = require('node:fs');
const path = require('node:path');
const { generate, readVersion, OUTPUT } = require('../../scripts/gen-unicode-tables');

const folder = process.env.PAGEDLM_UCD_DIR || '/usr/share/unicode';
const committed = fs.readFileSync(OUTPUT, 'utf8');
const committedVersion = /Unicode Character Database (\d+\.\d+\.\d+)/.exec(committed)?.[1];
const localVersion = fs.existsSync(path.join(folder, 'PropList.txt')) ? readVersion(folder) : null;

test('the committed tables name their Unicode version', () => {
  expect(committedVersion).toMatch(/^\d+\.\d+\.\d+$/);
});

const matching = localVersion !== null && localVersion === committedVersion;
(matching ? test : test.skip)(
  matching ? 'unicode_tables.cpp is what scripts/gen-unicode-tables.js writes' : `unicode_tables.cpp regeneration (skipped: no UCD ${committedVersion} in ${folder})`,
  () => {
    expect(generate(folder) === committed).toBe(true);
  },
);
