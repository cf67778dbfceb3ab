'use strict';
// The ErrorCode type lists exactly the codes pagedlm produces: every code the engine names (error_code_name),
// the addon sets on the errors it throws itself (grammar and schema TypeErrors) or the JS layer throws, and no other.
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..', '..');
const read = (file) => fs.readFileSync(path.join(root, file), 'utf8');
const codesIn = (text) => new Set(text.match(/ERR_[A-Z_]+/g) ?? []);

test('the ErrorCode type lists every code the code produces, and only those', () => {
  const declared = read('lib/index.d.ts').match(/export type ErrorCode =([^;]*);/);
  expect(declared).not.toBeNull();
  const typed = [...codesIn(declared[1])].sort();

  const produced = new Set(codesIn(read('native/common/status.cpp')));
  for (const file of fs.readdirSync(path.join(root, 'native', 'addon'))) for (const code of codesIn(read(`native/addon/${file}`))) produced.add(code);
  const jsFiles = fs.readdirSync(path.join(root, 'lib'), { recursive: true }).filter((f) => f.endsWith('.js')).map((f) => `lib/${f}`);
  for (const file of [...jsFiles, 'express.js']) for (const code of codesIn(read(file))) produced.add(code);

  expect(typed).toEqual([...produced].sort());
});
