'use strict';
// Writes GGUF v3 files from JS: used by the benchmarks (Llama-shaped synthetic models of any size, streamed
// to disk) and by tests that need odd-shaped models. Weights are pseudo-random; never real model data.
const fs = require('node:fs');

const TYPE = { u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9 };
// bytes per block of `block` elements
const TENSOR = {
  F32: { id: 0, block: 1, bytes: 4 },
  F16: { id: 1, block: 1, bytes: 2 },
  Q8_0: { id: 8, block: 32, bytes: 34 },
  Q4_K: { id: 12, block: 256, bytes: 144 },
  Q6_K: { id: 14, block: 256, bytes: 210 },
};
const ALIGNMENT = 32;

class Encoder {
  constructor() {
    this.parts = [];
  }
  u32(v) {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    this.parts.push(b);
  }
  u64(v) {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    this.parts.push(b);
  }
  f32(v) {
    const b = Buffer.alloc(4);
    b.writeFloatLE(v);
    this.parts.push(b);
  }
  string(s) {
    const bytes = Buffer.from(s, 'utf8');
    this.u64(bytes.length);
    this.parts.push(bytes);
  }
  value(type, v) {
    if (type === 'u32') this.u32(v);
    else if (type === 'i32') this.u32(v >>> 0);
    else if (type === 'f32') this.f32(v);
    else if (type === 'bool') this.parts.push(Buffer.from([v ? 1 : 0]));
    else if (type === 'string') this.string(v);
    else throw new Error(`unsupported metadata type ${type}`);
  }
  buffer() {
    return Buffer.concat(this.parts);
  }
}

/** metadata: [key, type, value] with type u32 | i32 | f32 | bool | string | [elementType] for arrays. */
function encodeHeader(metadata, tensors) {
  const e = new Encoder();
  e.parts.push(Buffer.from('GGUF'));
  e.u32(3);
  e.u64(tensors.length);
  e.u64(metadata.length);
  for (const [key, type, value] of metadata) {
    e.string(key);
    if (Array.isArray(type)) {
      e.u32(TYPE.array);
      e.u32(TYPE[type[0]]);
      e.u64(value.length);
      for (const v of value) e.value(type[0], v);
    } else {
      e.u32(TYPE[type]);
      e.value(type, value);
    }
  }
  let offset = 0;
  for (const t of tensors) {
    const { block, bytes } = TENSOR[t.type];
    if (t.dims[0] % block !== 0) throw new Error(`${t.name}: rows of ${t.dims[0]} are not whole ${t.type} blocks of ${block}`);
    t.bytes = (t.dims.reduce((a, b) => a * b, 1) / block) * bytes;
    e.string(t.name);
    e.u32(t.dims.length);
    for (const d of t.dims) e.u64(d);
    e.u32(TENSOR[t.type].id);
    e.u64(offset);
    t.offset = offset;
    offset += Math.ceil(t.bytes / ALIGNMENT) * ALIGNMENT;
  }
  const header = e.buffer();
  return Buffer.concat([header, Buffer.alloc((ALIGNMENT - (header.length % ALIGNMENT)) % ALIGNMENT)]);
}

function xorshift(seed) {
  let state = seed >>> 0 || 1;
  return () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 4294967296; // [0, 1)
  };
}

// A pool of pseudo-random values (uniform in [-scale, scale)) encoded once, streamed cyclically into every
// tensor of that type; its length is a whole number of the type's blocks.
function valuePool(type, scale, seed) {
  const next = xorshift(seed);
  const blocks = type === 'Q4_K' || type === 'Q6_K' ? 1 << 12 : 1 << 15;
  const { block, bytes } = TENSOR[type];
  const count = blocks * block;
  if (type === 'F32' || type === 'F16') {
    const out = Buffer.alloc(count * bytes);
    for (let i = 0; i < count; i++) {
      const value = (next() - 0.5) * 2 * scale;
      if (type === 'F32') out.writeFloatLE(value, i * 4);
      else out.writeUInt16LE(toHalf(value), i * 2);
    }
    return out;
  }
  const out = Buffer.alloc(blocks * bytes);
  for (let b = 0; b < blocks; b++) {
    const at = b * bytes;
    if (type === 'Q8_0') {
      out.writeUInt16LE(toHalf(scale / 127), at);
      for (let i = 0; i < 32; i++) out.writeInt8(Math.round((next() - 0.5) * 254), at + 2 + i);
    } else if (type === 'Q6_K') {
      // Q6_K: value = d * sc * (q - 32) with random 6-bit q (the first 192 bytes) and int8 sc; d last.
      for (let i = 0; i < 192; i++) out[at + i] = Math.floor(next() * 256);
      for (let i = 0; i < 16; i++) out.writeInt8(Math.round((next() - 0.5) * 254), at + 192 + i);
      out.writeUInt16LE(toHalf(scale / (32 * 127)), at + 208);
    } else {
      // Q4_K: value = d * sc * q - dmin * m with 6-bit sc, m and 4-bit q, all random bytes.
      out.writeUInt16LE(toHalf((2 * scale) / (15 * 63)), at);
      out.writeUInt16LE(toHalf(scale / 63), at + 2);
      for (let i = 4; i < bytes; i++) out[at + i] = Math.floor(next() * 256);
    }
  }
  return out;
}

function toHalf(value) {
  const f = new Float32Array([value]);
  const bits = new Uint32Array(f.buffer)[0];
  const sign = (bits >>> 16) & 0x8000;
  const exponent = ((bits >>> 23) & 0xff) - 127 + 15;
  if (exponent <= 0) return sign; // tiny values flush to zero: fine for synthetic weights
  if (exponent >= 31) return sign | 0x7c00;
  return sign | (exponent << 10) | ((bits >>> 13) & 0x3ff);
}

/** A SentencePiece vocabulary: <unk>, <s>, </s>, 256 byte tokens, then filler pieces. */
function vocabulary(size) {
  const tokens = ['<unk>', '<s>', '</s>'];
  const types = [2, 3, 3];
  for (let b = 0; b < 256; b++) {
    tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
    types.push(6);
  }
  const letters = 'abcdefghijklmnopqrstuvwxyz';
  for (const c of ['\u2581', ...letters]) {
    tokens.push(c);
    types.push(1);
  }
  for (let i = 0; tokens.length < size; i++) {
    tokens.push(`\u2581${letters[i % 26]}${letters[Math.floor(i / 26) % 26]}${i}`);
    types.push(1);
  }
  return { tokens, types, scores: tokens.map((_, i) => -i) };
}

/**
 * Writes a Llama-shaped model with random weights.
 * shape: { dim, layers, heads, kvHeads, ffn, vocab, context, type: 'F16' | 'F32' | 'Q8_0' | 'Q4_K' | 'Q6_K' |
 *   'Q4_K_M', name }. 'Q4_K_M' mixes types as llama.cpp's Q4_K_M files do: Q4_K, with the output matrix and
 *   the V and down matrices of every other layer in Q6_K.
 */
function writeLlamaModel(file, shape) {
  const { dim, layers, heads, kvHeads, ffn, vocab, context = 4096, name = 'synthetic', chatTemplate } = shape;
  const mixed = shape.type === 'Q4_K_M';
  const type = mixed ? 'Q4_K' : shape.type || 'F16';
  const moreBits = (l) => (mixed && l % 2 === 0 ? 'Q6_K' : type);
  const headDim = dim / heads;
  const v = vocabulary(vocab);
  const a = 'llama';
  const metadata = [
    ['general.architecture', 'string', a],
    ['general.name', 'string', name],
    [`${a}.context_length`, 'u32', context],
    [`${a}.embedding_length`, 'u32', dim],
    [`${a}.block_count`, 'u32', layers],
    [`${a}.feed_forward_length`, 'u32', ffn],
    [`${a}.attention.head_count`, 'u32', heads],
    [`${a}.attention.head_count_kv`, 'u32', kvHeads],
    [`${a}.attention.layer_norm_rms_epsilon`, 'f32', 1e-5],
    [`${a}.rope.freq_base`, 'f32', 10000],
    [`${a}.rope.dimension_count`, 'u32', headDim],
    ['tokenizer.ggml.model', 'string', 'llama'],
    ['tokenizer.ggml.tokens', ['string'], v.tokens],
    ['tokenizer.ggml.scores', ['f32'], v.scores],
    ['tokenizer.ggml.token_type', ['i32'], v.types], // i32, as llama.cpp requires
    ['tokenizer.ggml.bos_token_id', 'u32', 1],
    ['tokenizer.ggml.eos_token_id', 'u32', 2],
    ['tokenizer.ggml.unknown_token_id', 'u32', 0],
  ];
  if (chatTemplate) metadata.push(['tokenizer.chat_template', 'string', chatTemplate]);
  const tensors = [
    { name: 'token_embd.weight', dims: [dim, vocab], type },
    { name: 'output_norm.weight', dims: [dim], type: 'F32', norm: true },
    { name: 'output.weight', dims: [dim, vocab], type: mixed ? 'Q6_K' : type },
  ];
  for (let l = 0; l < layers; l++) {
    const p = `blk.${l}.`;
    tensors.push(
      { name: `${p}attn_norm.weight`, dims: [dim], type: 'F32', norm: true },
      { name: `${p}attn_q.weight`, dims: [dim, dim], type },
      { name: `${p}attn_k.weight`, dims: [dim, kvHeads * headDim], type },
      { name: `${p}attn_v.weight`, dims: [dim, kvHeads * headDim], type: moreBits(l) },
      { name: `${p}attn_output.weight`, dims: [dim, dim], type },
      { name: `${p}ffn_norm.weight`, dims: [dim], type: 'F32', norm: true },
      { name: `${p}ffn_gate.weight`, dims: [dim, ffn], type },
      { name: `${p}ffn_up.weight`, dims: [dim, ffn], type },
      { name: `${p}ffn_down.weight`, dims: [ffn, dim], type: moreBits(l) },
    );
  }
  const header = encodeHeader(metadata, tensors);
  const pools = {};
  for (const t of new Set(tensors.map((x) => x.type))) pools[t] = valuePool(t, 1 / Math.sqrt(dim), 1 + Object.keys(TENSOR).indexOf(t));
  const ones = Buffer.from(new Float32Array(dim).fill(1).buffer);
  const tmp = `${file}.partial`;
  const fd = fs.openSync(tmp, 'w');
  try {
    fs.writeSync(fd, header);
    let written = 0;
    for (const t of tensors) {
      const pad = t.offset - written;
      if (pad > 0) fs.writeSync(fd, Buffer.alloc(pad));
      written = t.offset;
      if (t.norm) {
        fs.writeSync(fd, ones);
      } else {
        const pool = pools[t.type];
        for (let done = 0; done < t.bytes; ) {
          const unit = TENSOR[t.type].bytes;
          const start = ((Math.floor(done / unit) * 7) % (pool.length / unit)) * unit; // vary the phase so rows differ
          const n = Math.min(pool.length - start, t.bytes - done);
          fs.writeSync(fd, pool, start, n);
          done += n;
        }
      }
      written += t.bytes;
    }
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
  return file;
}

module.exports = { writeLlamaModel, vocabulary };
Object.assign(module.exports, { encodeHeader, valuePool }); // for test/support/tokenizer-gguf.js
