'use strict';
// The models and inputs that test/reference/llama-cpp-embeddings.mjs runs through llama.cpp and
// test/js/embeddings.test.js through pagedlm: a synthetic llama for each pooling_type pagedlm computes, a
// qwen3 (Q/K norms, a head wider than dim / heads) with mean pooling, and the shared models, which carry no
// pooling_type (llama.cpp then takes the last token's row: `pooling` is what pagedlm is asked for).

const CONTEXT = 256;
const SMALL = { dim: 256, layers: 2, heads: 4, kvHeads: 2, ffn: 512, vocab: 384, context: 4096, type: 'F32' };

// BOS, then seeded filler ids past the byte tokens.
function tokensOf(length, seed) {
  const ids = [1];
  for (let i = 1; i < length; i++) ids.push(259 + ((seed * 31 + i * 17) % 120));
  return ids;
}
const SYNTHETIC_INPUTS = [tokensOf(1, 1), tokensOf(9, 2), tokensOf(57, 3), tokensOf(200, 4)];
const TEXTS = ['A neural network', 'In the quiet hum of the servers'];

const EMBEDDING_CASES = [
  { name: 'llama-mean', pooling: 'mean', shape: { ...SMALL, poolingType: 1, seed: 11 }, tokens: SYNTHETIC_INPUTS },
  { name: 'llama-cls', pooling: 'cls', shape: { ...SMALL, poolingType: 2, seed: 11 }, tokens: SYNTHETIC_INPUTS },
  { name: 'llama-last', pooling: 'last', shape: { ...SMALL, poolingType: 3, seed: 11 }, tokens: SYNTHETIC_INPUTS },
  { name: 'qwen3-mean', pooling: 'mean', shape: { ...SMALL, architecture: 'qwen3', headDim: 128, poolingType: 1, seed: 12 }, tokens: SYNTHETIC_INPUTS },
  { name: 'aidreams260K', pooling: 'last', shared: 'aidreams260K.gguf', texts: TEXTS },
  { name: 'synth-tiny-f16', pooling: 'last', shared: 'synth-tiny-f16.gguf', texts: TEXTS },
];

module.exports = { EMBEDDING_CASES, CONTEXT };
