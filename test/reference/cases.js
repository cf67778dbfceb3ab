'use strict';
// The synthetic models that test/reference/llama-cpp-models.mjs runs through llama.cpp and
// test/js/llama-cpp-parity.test.js through pagedlm: every architecture in F32 (the weights both engines read
// exactly, so the comparison sees the architecture alone), and every weight type and mix on llama. Dimensions
// are multiples of 256 for the K-quants. Windowed architectures get a window shorter than the prompt, so the
// window changes the answer.

const STEPS = 32; // greedy tokens recorded per case
const CONTEXT = 256; // context both engines are given
const PROMPT_TOKENS = 80;

const SMALL = { dim: 256, layers: 2, heads: 4, kvHeads: 2, ffn: 512, vocab: 384, context: 4096 };

const architectureCases = [
  { name: 'llama-F32', shape: { ...SMALL, architecture: 'llama', type: 'F32' } },
  // Llama 3.x: rope_freqs factors, tied output, a large RoPE base.
  { name: 'llama3-F32', shape: { ...SMALL, architecture: 'llama', type: 'F32', ropeFreqs: true, tiedOutput: true, ropeBase: 500000, context: 131072 } },
  { name: 'qwen2-F32', shape: { ...SMALL, architecture: 'qwen2', type: 'F32' } },
  // head size 128 with 4 heads: the query width (512) differs from the embedding width.
  { name: 'qwen3-F32', shape: { ...SMALL, architecture: 'qwen3', type: 'F32', headDim: 128 } },
  // Even layers slide (window 32 over an 80-token prompt); soft-caps low enough to bend the logits.
  { name: 'gemma2-F32', shape: { ...SMALL, architecture: 'gemma2', type: 'F32', layers: 4, window: 32, attnSoftcap: 10, finalSoftcap: 15 } },
  // Layers 0-4 slide with RoPE base 10000, layer 5 attends globally with the file's base.
  { name: 'gemma3-F32', shape: { ...SMALL, architecture: 'gemma3', type: 'F32', layers: 6, window: 32 } },
  { name: 'phi3-F32', shape: { ...SMALL, architecture: 'phi3', type: 'F32' } },
  // Phi-3.5 / Phi-4-mini style LongRoPE: short and long factor tensors and the attention factor. llama.cpp
  // takes the short factors while the context (CONTEXT) is within the original 4096 and the long ones past
  // it, and scales by the attention factor either way.
  {
    name: 'phi3-longrope-F32',
    shape: { ...SMALL, architecture: 'phi3', type: 'F32', context: 131072, ropeScaling: { type: 'longrope', factor: 32, originalContext: 4096, attnFactor: 1.1902380714238083 } },
  },
  { name: 'qwen2-Q8_0', shape: { ...SMALL, architecture: 'qwen2', type: 'Q8_0' } },
  { name: 'qwen2-Q4_K', shape: { ...SMALL, architecture: 'qwen2', type: 'Q4_K' } },
];

const WEIGHT_TYPES = ['F16', 'BF16', 'Q8_0', 'Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q2_K', 'Q3_K', 'Q4_K', 'Q5_K', 'Q6_K', 'IQ4_NL', 'IQ4_XS', 'Q3_K_M', 'Q4_K_M', 'Q5_K_M'];
const typeCases = WEIGHT_TYPES.map((type) => ({ name: `llama-${type}`, shape: { ...SMALL, architecture: 'llama', type } }));

// Multi-head latent attention: queries straight from attn_q, and through the query LoRA.
const MLA = { kvLoraRank: 64, ropeDim: 16, qkNopeDim: 32, vHeadDim: 32 };
const latentCases = [
  { name: 'deepseek2-F32', shape: { ...SMALL, architecture: 'deepseek2', type: 'F32', kvHeads: 1, mla: { ...MLA, qLoraRank: 0 } } },
  { name: 'deepseek2-qlora-F32', shape: { ...SMALL, architecture: 'deepseek2', type: 'F32', kvHeads: 1, mla: { ...MLA, qLoraRank: 96 } } },
];

// Each case's own seed (its position), so no two models share weights.
const CASES = [...architectureCases, ...typeCases, ...latentCases].map((c, i) => ({ ...c, shape: { ...c.shape, name: c.name, seed: 1000 + i } }));

/** BOS, then ids spread over the vocabulary (byte tokens included), fixed per case. */
function promptFor(c) {
  const { vocab, seed } = c.shape;
  const ids = [1];
  for (let i = 1; i < PROMPT_TOKENS; i++) ids.push(3 + ((i * 7919 + seed * 104729) % (vocab - 3)));
  return ids;
}

module.exports = { CASES, STEPS, CONTEXT, PROMPT_TOKENS, promptFor };
