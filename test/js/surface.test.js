'use strict';
// What pagedlm ships exposes the engine only: measurement tooling (the read-bandwidth probe) lives in
// bench/native, built for the benchmarks alone.
const fs = require('node:fs');
const path = require('node:path');
const binding = require('../../lib/native');
const pagedlm = require('../..');

test('the addon exports load, inspect, NativeEngine, jsonSchemaToGrammar and the tool-call parsers, nothing else', () => {
  expect(Object.keys(binding).sort()).toEqual(['NativeEngine', 'inspect', 'jsonSchemaToGrammar', 'load', 'parseToolCalls', 'toolCallFamily']);
});

test('the package exports Engine, PagedlmError, DEFAULT_SAMPLING and jsonSchemaToGrammar; Engine has only its documented static calls', () => {
  expect(Object.keys(pagedlm).sort()).toEqual(['DEFAULT_SAMPLING', 'Engine', 'PagedlmError', 'jsonSchemaToGrammar']);
  const statics = Object.getOwnPropertyNames(pagedlm.Engine).filter((name) => typeof pagedlm.Engine[name] === 'function');
  expect(statics.sort()).toEqual(['estimateKvBytes', 'inspect', 'load']);
});

test('the TypeScript declarations name no benchmark-only symbol', () => {
  const types = fs.readFileSync(path.join(__dirname, '..', '..', 'lib', 'index.d.ts'), 'utf8');
  expect(types).not.toMatch(/bandwidth|ReadBandwidthProbe|measureRead/i);
});
