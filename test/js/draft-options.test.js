'use strict';
// Engine.load's `draft` option: what it accepts, what it hands the addon, and the errors for everything else.
const fs = require('node:fs');
const path = require('node:path');
const { Engine } = require('../..');
const { loadOptions, DRAFT_KEYS } = require('../../lib/options');

test('a draft model and its token count reach the native options', () => {
  expect(loadOptions({ draft: { model: '/models/draft.gguf', tokens: 6 } })).toMatchObject({ draftModel: '/models/draft.gguf', draftTokens: 6 });
  const defaults = loadOptions({ draft: { model: 'd.gguf' } });
  expect(defaults.draftModel).toBe('d.gguf');
  expect(defaults.draftTokens).toBeUndefined(); // the engine's default (4)
  expect(loadOptions({})).not.toHaveProperty('draftModel');
  expect(loadOptions({})).not.toHaveProperty('draftTokens');
});

test.each([
  [{ draft: 'd.gguf' }, TypeError, 'draft must be an object, got string d.gguf'],
  [{ draft: null }, TypeError, 'draft must be an object, got null'],
  [{ draft: {} }, TypeError, "draft needs model: the draft model's path"],
  [{ draft: { tokens: 4 } }, TypeError, "draft needs model: the draft model's path"],
  [{ draft: { model: '' } }, TypeError, "draft.model must be the draft model's path (a non-empty string), got string "],
  [{ draft: { model: 7 } }, TypeError, "draft.model must be the draft model's path (a non-empty string), got number 7"],
  [{ draft: { model: 'd.gguf', tokens: 0 } }, RangeError, 'draft.tokens must be at least 1 and at most 16, got 0'],
  [{ draft: { model: 'd.gguf', tokens: 17 } }, RangeError, 'draft.tokens must be at least 1 and at most 16, got 17'],
  [{ draft: { model: 'd.gguf', tokens: 2.5 } }, RangeError, 'draft.tokens must be an integer, got 2.5'],
  [{ draft: { model: 'd.gguf', tokens: '4' } }, TypeError, 'draft.tokens must be a number, got string 4'],
  [{ draft: { model: 'd.gguf', token: 4 } }, TypeError, "unknown option 'token' in draft: did you mean 'tokens'?"],
])('Engine.load rejects %j', async (options, ErrorClass, message) => {
  expect(() => loadOptions(options)).toThrow(new ErrorClass(message));
  // Checked before the model file is opened: the path need not exist.
  await expect(Engine.load('/nonexistent/target.gguf', options)).rejects.toThrow(new ErrorClass(message));
});

test('the draft keys accepted are the keys declared', () => {
  const text = fs.readFileSync(path.join(__dirname, '..', '..', 'lib', 'index.d.ts'), 'utf8');
  const body = /export interface DraftOptions \{([\s\S]*?)\n\}/.exec(text)[1];
  const declared = [...body.matchAll(/^ {2}(\w+)\??:/gm)].map((m) => m[1]).sort();
  expect(declared).toEqual([...DRAFT_KEYS].sort());
});
