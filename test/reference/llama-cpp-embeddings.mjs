#!/usr/bin/env node
// npm run reference:embeddings: llama.cpp's embeddings (node-llama-cpp's getEmbeddingFor, CPU) of synthetic
// models with each pooling_type and of the shared test models, kept as fixtures in
// test/fixtures/llama-cpp/embeddings/ for test/js/embeddings.test.js. The vectors are llama.cpp's raw pooled
// hidden states: llama.cpp itself does not normalize them (its examples and server do, afterwards).
// Inputs are token ids, BOS first, so that both engines see the same tokens. The shared models carry no
// pooling_type, which node-llama-cpp reads as the last token's row. Arguments: case names (default: all).
// Environment: PAGEDLM_COMPARE_DIR (scratch folder holding node-llama-cpp, default <tmp>/pagedlm-compare).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';

const require = createRequire(import.meta.url);
const { writeModel } = require('../support/gguf-writer.js');
const { EMBEDDING_CASES, CONTEXT } = require('./embedding-cases.js');

const LLAMA_CPP_VERSION = '3.22.1';
const here = path.dirname(fileURLToPath(import.meta.url));
const fixtures = path.join(here, '..', 'fixtures', 'llama-cpp', 'embeddings');
const sharedModels = path.join(here, '..', '..', '..', 'shared', 'models');
const scratch = process.env.PAGEDLM_COMPARE_DIR || path.join(os.tmpdir(), 'pagedlm-compare');

async function loadLlamaCpp() {
  const entry = path.join(scratch, 'node-llama-cpp', 'node_modules', 'node-llama-cpp', 'dist', 'index.js');
  if (!fs.existsSync(entry)) throw new Error(`node-llama-cpp ${LLAMA_CPP_VERSION} is not installed in ${scratch}: run npm run reference:models once (it installs it)`);
  const lib = await import(pathToFileURL(entry).href);
  return lib.getLlama({ gpu: false, build: 'never', logLevel: 'error' });
}

const sha256 = (file) => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
const round = (v) => Math.round(v * 1e6) / 1e6;

// The case's inputs as token ids: given ones, or its texts tokenized by llama.cpp with BOS first.
function inputsOf(c, model) {
  if (c.tokens) return c.tokens.map((tokens) => ({ tokens }));
  return c.texts.map((text) => ({ text, tokens: [model.tokens.bos, ...Array.from(model.tokenize(text))] }));
}

async function runCase(llama, c, dir) {
  let file = c.shared && path.join(sharedModels, c.shared);
  if (!file) {
    file = path.join(dir, `${c.name}.gguf`);
    writeModel(file, c.shape);
  }
  const model = await llama.loadModel({ modelPath: file, gpuLayers: 0 });
  const context = await model.createEmbeddingContext({ contextSize: CONTEXT, threads: 2 });
  try {
    const inputs = inputsOf(c, model);
    for (const input of inputs) {
      const { vector } = await context.getEmbeddingFor(input.tokens);
      input.embedding = Array.from(vector, round);
    }
    return { modelSha256: sha256(file), inputs };
  } finally {
    await context.dispose();
    await model.dispose();
  }
}

function formatFixture(fixture) {
  const { inputs, ...fields } = fixture;
  const lines = Object.entries(fields).map(([key, value]) => `  ${JSON.stringify(key)}: ${JSON.stringify(value)},`);
  return `{\n${lines.join('\n')}\n  "inputs": [\n${inputs.map((i) => `    ${JSON.stringify(i)}`).join(',\n')}\n  ]\n}\n`;
}

async function main() {
  const chosen = process.argv.slice(2);
  for (const name of chosen) if (!EMBEDDING_CASES.some((c) => c.name === name)) throw new Error(`unknown case '${name}'`);
  const llama = await loadLlamaCpp();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pagedlm-reference-'));
  fs.mkdirSync(fixtures, { recursive: true });
  try {
    for (const c of EMBEDDING_CASES.filter((x) => chosen.length === 0 || chosen.includes(x.name))) {
      const record = await runCase(llama, c, dir);
      const source = c.shared ? { shared: c.shared } : { shape: c.shape };
      const fixture = {
        case: c.name,
        generator: 'test/reference/llama-cpp-embeddings.mjs',
        llamaCpp: `node-llama-cpp ${LLAMA_CPP_VERSION} (llama.cpp ${llama.llamaCppRelease.release}), CPU, getEmbeddingFor, not normalized`,
        contextSize: CONTEXT,
        pooling: c.pooling,
        ...source,
        ...record,
      };
      fs.writeFileSync(path.join(fixtures, `${c.name}.json`), formatFixture(fixture));
      process.stderr.write(`${c.name}: ${record.inputs.length} vectors of ${record.inputs[0].embedding.length}\n`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
    await llama.dispose();
  }
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
