'use strict';
// Synthetic models that copy, for the speculative decoding benchmark: a model's greedy continuation of a
// token is that token's successor in a fixed cycle through the vocabulary (a bigram table). A prompt that holds
// a stretch of the cycle (the "document") and then the stretch's first tokens again is continued with the rest
// of the document, as a trained model asked to quote its prompt would do.
//
// How: every token's embedding is a seeded +-1 code; the output matrix's row for token u is the code of the
// token that u follows; the layers are drawn at a small fraction of their usual range (layerScale), so they
// barely move the residual stream and the final hidden state stays the input token's code. Its dot product with
// its own code (dim) stands far above its dot product with any other code (about sqrt(dim)), so the largest
// logit is the successor's. The final norm is a constant sized so the successor's logit is COPY_LOGIT: sampling
// at temperature 1 copies too. Ids 0-2 (unk, BOS, EOS) stand outside the cycle: their output rows are zero, so
// the model never emits them.
//
// Two shapes share one cycle and one vocabulary: COPIER_1B (Llama-1B-shaped, Q4_K like the constrained
// benchmark's models, so its decode speed is a 1B model's) and COPIER_DRAFT (tiny: a draft model that agrees
// with the 1B model on every token).
const { LLAMA_1B } = require('./models');

const COPY_LOGIT = 20;
const SPECIAL_IDS = 3; // <unk>, <s>, </s>
const CYCLE_SEED = 28;

const COPIER_1B = { ...LLAMA_1B, type: 'Q4_K', layerScale: 0.05, name: 'llama-1b-q4_k-copier' };
const COPIER_DRAFT = { dim: 256, layers: 2, heads: 4, kvHeads: 2, ffn: 512, vocab: LLAMA_1B.vocab, context: LLAMA_1B.context, type: 'Q4_K', layerScale: 0.05, name: 'copier-draft-q4_k' };

// mulberry32: a small seeded generator of 32-bit words.
function random32(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** The cycle through ids SPECIAL_IDS..vocab-1: { order (the ids in cycle order), next, previous } (-1 outside it). */
function copyCycle(vocab) {
  const next32 = random32(CYCLE_SEED);
  const order = Int32Array.from({ length: vocab - SPECIAL_IDS }, (_, i) => i + SPECIAL_IDS);
  for (let i = order.length - 1; i > 0; i--) {
    const j = next32() % (i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  const next = new Int32Array(vocab).fill(-1);
  const previous = new Int32Array(vocab).fill(-1);
  for (let i = 0; i < order.length; i++) {
    const successor = order[(i + 1) % order.length];
    next[order[i]] = successor;
    previous[successor] = order[i];
  }
  return { order, next, previous };
}

// Token t's +-1 code as bits (1 for +1), `dim` of them in 32-bit words.
function codeWords(t, dim) {
  const next32 = random32(Math.imul(t + 1, 0x9e3779b1) ^ dim);
  return Uint32Array.from({ length: dim / 32 }, () => next32());
}

// Q4_K rows whose values are exactly +-1 (d = 2, dmin = 1, every sub-block's scale and min 1: value = 2q - 1
// with q in {0, 1}) or all zero (d = dmin = 0). rowCode(r) gives row r's code words, or null for a zero row.
function signRowsQ4K(rows, dim, rowCode) {
  const blockBytes = 144;
  const blocksPerRow = dim / 256;
  const out = Buffer.alloc(rows * blocksPerRow * blockBytes);
  for (let r = 0; r < rows; r++) {
    const words = rowCode(r);
    if (!words) continue;
    const bit = (i) => (words[i >>> 5] >>> (i & 31)) & 1;
    for (let b = 0; b < blocksPerRow; b++) {
      const at = (r * blocksPerRow + b) * blockBytes;
      out.writeUInt16LE(0x4000, at); // d = 2.0 as a half
      out.writeUInt16LE(0x3c00, at + 2); // dmin = 1.0
      out.fill(1, at + 4, at + 12); // scales (bytes 0-3) and mins (4-7) of sub-blocks 0-3: 1
      out.fill(0x11, at + 12, at + 16); // low bits of sub-blocks 4-7's scale and min: 1
      // Byte l of sub-block pair j holds element 64j + l in its low nibble and 64j + 32 + l in its high one.
      for (let j = 0; j < 4; j++) {
        for (let l = 0; l < 32; l++) {
          const e = 256 * b + 64 * j + l;
          out[at + 16 + 32 * j + l] = bit(e) | (bit(e + 32) << 4);
        }
      }
    }
  }
  return out;
}

/** writeModel shape options that make `shape` a copier of copyCycle(shape.vocab). */
function copierShape(shape) {
  if (shape.type !== 'Q4_K' || shape.dim % 256 !== 0) throw new Error('a copier model is Q4_K with dim a multiple of 256');
  const { vocab, dim } = shape;
  const { previous } = copyCycle(vocab);
  const finalNorm = Buffer.alloc(dim * 4);
  for (let i = 0; i < dim; i++) finalNorm.writeFloatLE(COPY_LOGIT / dim, i * 4);
  return {
    ...shape,
    tensorData: {
      'token_embd.weight': () => signRowsQ4K(vocab, dim, (t) => codeWords(t, dim)),
      'output.weight': () => signRowsQ4K(vocab, dim, (u) => (previous[u] < 0 ? null : codeWords(previous[u], dim))),
      'output_norm.weight': () => finalNorm,
    },
  };
}

/**
 * A copy task: the document (`length` tokens of the cycle from position `start`) with `edits` of its tokens
 * replaced by tokens from elsewhere in the cycle, an unrelated request of 16 tokens, then the document's first
 * `cue` tokens. { prompt, expected }: expected is the model's greedy continuation (the unedited document after the
 * cue; the model follows its bigram table, not the edits).
 */
function copyTask(vocab, { start = 1000, length = 256, edits = 4, cue = 4 } = {}) {
  const { order } = copyCycle(vocab);
  const at = (i) => order[(start + i) % order.length];
  const document = Array.from({ length }, (_, i) => at(i));
  const edited = document.slice();
  for (let e = 1; e <= edits; e++) edited[Math.floor((e * length) / (edits + 1))] = at(length + 100 + e);
  const request = Array.from({ length: 16 }, (_, i) => at(length + 200 + 37 * i));
  return { prompt: [1, ...edited, ...request, ...document.slice(0, cue)], expected: document.slice(cue) };
}

/** `length` seeded random ids outside the special ones: text for which lookups find nothing useful. */
function randomTokens(vocab, length, seed = 7) {
  const next32 = random32(seed);
  return Array.from({ length }, () => SPECIAL_IDS + (next32() % (vocab - SPECIAL_IDS)));
}

module.exports = { COPIER_1B, COPIER_DRAFT, copierShape, copyCycle, copyTask, randomTokens };
