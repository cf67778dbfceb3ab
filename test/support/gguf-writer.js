'use strict';
// Writes GGUF v3 files from JS: used by the benchmarks (synthetic models of any size, streamed to disk), by
// the llama.cpp reference script (test/reference) and by tests that need odd-shaped models. Weights are
// seeded pseudo-random values, never real model data: the same shape and seed give the same bytes on every
// machine. Metadata keys and tensor names are the ones llama.cpp reads for each architecture.
const fs = require('node:fs');

const TYPE = { u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9 };
// GGML type ids, elements per block and bytes per block.
const TENSOR = {
  F32: { id: 0, block: 1, bytes: 4 },
  F16: { id: 1, block: 1, bytes: 2 },
  Q4_0: { id: 2, block: 32, bytes: 18 },
  Q4_1: { id: 3, block: 32, bytes: 20 },
  Q5_0: { id: 6, block: 32, bytes: 22 },
  Q5_1: { id: 7, block: 32, bytes: 24 },
  Q8_0: { id: 8, block: 32, bytes: 34 },
  Q2_K: { id: 10, block: 256, bytes: 84 },
  Q3_K: { id: 11, block: 256, bytes: 110 },
  Q4_K: { id: 12, block: 256, bytes: 144 },
  Q5_K: { id: 13, block: 256, bytes: 176 },
  Q6_K: { id: 14, block: 256, bytes: 210 },
  IQ4_NL: { id: 20, block: 32, bytes: 18 },
  IQ4_XS: { id: 23, block: 256, bytes: 136 },
  BF16: { id: 30, block: 1, bytes: 2 },
};
const WEIGHT_TYPES = Object.keys(TENSOR);

// Mixes as llama.cpp's quantizer writes them: `base` for most matrices, `output` for the output matrix, and
// `moreBits` for the V and down matrices of every other layer.
const MIXES = {
  Q4_K_M: { base: 'Q4_K', output: 'Q6_K', moreBits: 'Q6_K' },
  Q5_K_M: { base: 'Q5_K', output: 'Q6_K', moreBits: 'Q6_K' },
  Q3_K_M: { base: 'Q3_K', output: 'Q6_K', moreBits: 'Q5_K' },
};

const ARCHITECTURES = ['llama', 'mistral', 'qwen2', 'qwen3', 'gemma2', 'gemma3', 'phi3', 'deepseek2'];
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

// FNV-1a over the seed and a tensor's name: each tensor gets its own stream of values.
function streamSeed(seed, name) {
  let h = (2166136261 ^ seed) >>> 0;
  for (const c of Buffer.from(name)) h = Math.imul(h ^ c, 16777619) >>> 0;
  return h;
}

const scratch = new Float32Array(1);
const scratchBits = new Uint32Array(scratch.buffer);

function toHalf(value) {
  scratch[0] = value;
  const bits = scratchBits[0];
  const sign = (bits >>> 16) & 0x8000;
  const exponent = ((bits >>> 23) & 0xff) - 127 + 15;
  // Subnormal halves (quantized files hold them: a Q6_K block's scale of small weights is one), truncated.
  if (exponent <= 0) return sign | Math.min(1023, Math.floor(Math.abs(value) * 16777216));
  if (exponent >= 31) return sign | 0x7c00;
  return sign | (exponent << 10) | ((bits >>> 13) & 0x3ff);
}

function toBf16(value) {
  scratch[0] = value;
  return scratchBits[0] >>> 16; // truncation: the stored value is what both engines read
}

// Values per pool: a tensor no larger than this is random throughout; a larger one (benchmark models) repeats
// its pool with a shifting phase, which keeps writing a billion parameters fast.
const POOL_VALUES = 1 << 18;

// Encodes `blocks` random blocks of `type` whose values lie roughly in [-scale, scale]. The quantized types
// get random quant bytes and a random per-block scale (its sign random where the format allows it), so a
// kernel that reads the wrong block's scale or the wrong nibble is caught.
function encodeBlocks(type, blocks, scale, next) {
  const { block, bytes } = TENSOR[type];
  const out = Buffer.alloc(blocks * bytes);
  const jitter = () => 0.5 + next(); // a block's scale: [0.5, 1.5) of the nominal
  const signed = () => (next() < 0.5 ? -1 : 1) * jitter();
  const half = (at, v) => out.writeUInt16LE(toHalf(v), at);
  const randomBytes = (from, to) => {
    for (let i = from; i < to; i++) out[i] = Math.floor(next() * 256);
  };
  if (block === 1) {
    for (let i = 0; i < blocks; i++) {
      const value = (next() - 0.5) * 2 * scale;
      if (type === 'F32') out.writeFloatLE(value, i * 4);
      else if (type === 'F16') out.writeUInt16LE(toHalf(value), i * 2);
      else out.writeUInt16LE(toBf16(value), i * 2);
    }
    return out;
  }
  for (let b = 0; b < blocks; b++) {
    const at = b * bytes;
    randomBytes(at, at + bytes);
    switch (type) {
      case 'Q4_0': // d, 16 bytes of 4-bit q: d * (q - 8)
        half(at, (scale / 8) * signed());
        break;
      case 'Q4_1': // d, m, 16 bytes of 4-bit q: d * q + m
        half(at, ((2 * scale) / 15) * jitter());
        half(at + 2, -scale * jitter());
        break;
      case 'Q5_0': // d, 4 bytes of high bits, 16 bytes of low nibbles: d * (q - 16)
        half(at, (scale / 16) * signed());
        break;
      case 'Q5_1': // d, m, high bits, low nibbles: d * q + m
        half(at, ((2 * scale) / 31) * jitter());
        half(at + 2, -scale * jitter());
        break;
      case 'Q8_0': // d, 32 int8 q: d * q
        half(at, (scale / 127) * signed());
        break;
      case 'IQ4_NL': // d, 16 bytes of 4-bit indexes into a non-linear table in [-127, 113]
        half(at, (scale / 127) * signed());
        break;
      case 'Q2_K': // 16 scale bytes (4-bit scale, 4-bit min), 64 bytes of 2-bit q, d, dmin
        half(at + 80, ((2 * scale) / 45) * jitter());
        half(at + 82, (scale / 15) * jitter());
        break;
      case 'Q3_K': // 32 bytes of high bits, 64 bytes of 2-bit q, 12 bytes of 6-bit scales, d: d * (sc - 32) * q
        half(at + 108, (scale / 128) * signed());
        break;
      case 'Q4_K': // d, dmin, 12 bytes of 6-bit scales and mins, 128 bytes of 4-bit q: d * sc * q - dmin * m
        half(at, ((2 * scale) / (15 * 63)) * jitter());
        half(at + 2, (scale / 63) * jitter());
        break;
      case 'Q5_K': // d, dmin, 12 bytes of scales and mins, 32 bytes of high bits, 128 bytes of low nibbles
        half(at, ((2 * scale) / (31 * 63)) * jitter());
        half(at + 2, (scale / 63) * jitter());
        break;
      case 'Q6_K': // 128 bytes of low nibbles, 64 of high bits, 16 int8 scales, d: d * sc * (q - 32)
        half(at + 208, (scale / (32 * 127)) * signed());
        break;
      case 'IQ4_XS': // d, 2 + 4 bytes of 6-bit scales, 128 bytes of table indexes: d * (ls - 32) * table[q]
        half(at, (scale / (32 * 127)) * signed());
        break;
      default:
        throw new Error(`no encoder for ${type}`);
    }
  }
  return out;
}

function checkType(type, what) {
  if (!TENSOR[type]) throw new Error(`${what}: unknown weight type '${type}' (types: ${[...WEIGHT_TYPES, ...Object.keys(MIXES)].join(', ')})`);
}

/** The weight type of each kind of matrix: shape.type is one type or a mix; shape.types overrides by role. */
function matrixTypes(shape) {
  const mix = MIXES[shape.type];
  const base = mix ? mix.base : shape.type || 'F16';
  checkType(base, 'shape.type');
  const roles = {
    embedding: base,
    output: mix ? mix.output : base,
    attention: base,
    moreBits: mix ? mix.moreBits : base,
    ffn: base,
    ...shape.types,
  };
  for (const [role, type] of Object.entries(roles)) checkType(type, `shape.types.${role}`);
  return roles;
}

/**
 * A SentencePiece vocabulary: <unk>, <s>, </s>, 256 byte tokens, then filler pieces, and `controls` (control
 * tokens some architectures' loaders look up by text) last.
 */
function vocabulary(size, controls = []) {
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
  for (let i = 0; tokens.length < size - controls.length; i++) {
    tokens.push(`\u2581${letters[i % 26]}${letters[Math.floor(i / 26) % 26]}${i}`);
    types.push(1);
  }
  for (const c of controls) {
    tokens.push(c);
    types.push(3);
  }
  return { tokens, types, scores: tokens.map((_, i) => -i) };
}

// What differs between the architectures, as llama.cpp reads them.
const TRAITS = {
  llama: { ropeBase: 10000 },
  mistral: { ropeBase: 10000 },
  qwen2: { ropeBase: 1000000, qkvBias: true },
  qwen3: { ropeBase: 1000000, qkNorm: true, explicitHeadDim: true },
  gemma2: { ropeBase: 10000, postNorms: true, tiedOnly: true, scaledEmbedding: true, explicitHeadDim: true, softcaps: true, defaultWindow: 4096 },
  gemma3: { ropeBase: 1000000, postNorms: true, qkNorm: true, tiedOnly: true, scaledEmbedding: true, explicitHeadDim: true, defaultWindow: 512 },
  // llama.cpp's vocabulary loader looks Phi-3's end-of-turn tokens up by text.
  phi3: { ropeBase: 10000, fusedQkv: true, fusedGateUp: true, controls: ['<|endoftext|>', '<|end|>', '<|user|>', '<|assistant|>', '<|system|>'] },
  // Multi-head latent attention (shape.mla), dense layers only.
  deepseek2: { ropeBase: 10000, latent: true },
};

// deepseek2's attention metadata as llama.cpp's converter writes the MLA form: one KV head whose key is the
// latent and the RoPE part, the per-head sizes in the _mla keys, and the expert keys llama.cpp requires even
// of a model whose layers are all dense.
function latentMetadata(shape, a) {
  const m = shape.mla;
  return [
    [`${a}.attention.key_length`, 'u32', m.kvLoraRank + m.ropeDim],
    [`${a}.attention.value_length`, 'u32', m.kvLoraRank],
    [`${a}.attention.key_length_mla`, 'u32', m.qkNopeDim + m.ropeDim],
    [`${a}.attention.value_length_mla`, 'u32', m.vHeadDim],
    [`${a}.attention.kv_lora_rank`, 'u32', m.kvLoraRank],
    [`${a}.attention.q_lora_rank`, 'u32', m.qLoraRank || 0],
    [`${a}.leading_dense_block_count`, 'u32', m.denseLayers ?? shape.layers],
    [`${a}.expert_feed_forward_length`, 'u32', shape.ffn],
    [`${a}.expert_shared_count`, 'u32', 1],
  ];
}

// deepseek2's attention tensors: queries (through the query LoRA when qLoraRank > 0), the latent and RoPE key
// projection, and per head W_UK and W_UV as 3-D tensors.
function latentTensors(shape, p, type, layerMatrix, norm) {
  const { dim, heads } = shape;
  const m = shape.mla;
  const queryWidth = heads * (m.qkNopeDim + m.ropeDim);
  const unit = 1 / Math.sqrt(dim);
  const tensors = [];
  if (m.qLoraRank > 0) {
    tensors.push(
      layerMatrix(`${p}attn_q_a.weight`, dim, m.qLoraRank, type, 2 * unit),
      norm(`${p}attn_q_a_norm.weight`, m.qLoraRank),
      layerMatrix(`${p}attn_q_b.weight`, m.qLoraRank, queryWidth, type, 3 / Math.sqrt(m.qLoraRank)),
    );
  } else {
    tensors.push(layerMatrix(`${p}attn_q.weight`, dim, queryWidth, type, 3 * unit));
  }
  tensors.push(
    layerMatrix(`${p}attn_kv_a_mqa.weight`, dim, m.kvLoraRank + m.ropeDim, type, 3 * unit),
    norm(`${p}attn_kv_a_norm.weight`, m.kvLoraRank),
    { name: `${p}attn_k_b.weight`, dims: [m.qkNopeDim, m.kvLoraRank, heads], type, scale: 2 / Math.sqrt(m.qkNopeDim) },
    { name: `${p}attn_v_b.weight`, dims: [m.kvLoraRank, m.vHeadDim, heads], type, scale: 1 / Math.sqrt(m.kvLoraRank) },
  );
  return tensors;
}

function metadataFor(shape, a, traits, headDim, v) {
  const { dim, layers, heads, kvHeads, ffn, context = 4096, name = 'synthetic', chatTemplate } = shape;
  const metadata = [
    ['general.architecture', 'string', a],
    ['general.name', 'string', name],
    [`${a}.context_length`, 'u32', context],
    [`${a}.embedding_length`, 'u32', dim],
    [`${a}.block_count`, 'u32', layers],
    [`${a}.feed_forward_length`, 'u32', ffn],
    [`${a}.attention.head_count`, 'u32', heads],
    [`${a}.attention.head_count_kv`, 'u32', traits.latent ? 1 : kvHeads],
    [`${a}.attention.layer_norm_rms_epsilon`, 'f32', shape.rmsEps ?? 1e-5],
    [`${a}.rope.freq_base`, 'f32', shape.ropeBase ?? traits.ropeBase],
    [`${a}.rope.dimension_count`, 'u32', traits.latent ? shape.mla.ropeDim : headDim],
  ];
  if (traits.latent) {
    metadata.push(...latentMetadata(shape, a));
  } else if (traits.explicitHeadDim || headDim !== dim / heads) {
    metadata.push([`${a}.attention.key_length`, 'u32', headDim], [`${a}.attention.value_length`, 'u32', headDim]);
  }
  const window = shape.window ?? traits.defaultWindow;
  if (window) metadata.push([`${a}.attention.sliding_window`, 'u32', window]);
  if (traits.softcaps) {
    metadata.push([`${a}.attn_logit_softcapping`, 'f32', shape.attnSoftcap ?? 50], [`${a}.final_logit_softcapping`, 'f32', shape.finalSoftcap ?? 30]);
  } else if (shape.finalSoftcap) {
    metadata.push([`${a}.final_logit_softcapping`, 'f32', shape.finalSoftcap]);
  }
  if (shape.poolingType !== undefined) metadata.push([`${a}.pooling_type`, 'u32', shape.poolingType]);
  if (shape.ropeScaling) {
    const s = shape.ropeScaling;
    metadata.push([`${a}.rope.scaling.type`, 'string', s.type], [`${a}.rope.scaling.factor`, 'f32', s.factor]);
    if (s.originalContext) metadata.push([`${a}.rope.scaling.original_context_length`, 'u32', s.originalContext]);
    if (s.attnFactor) metadata.push([`${a}.rope.scaling.attn_factor`, 'f32', s.attnFactor]);
  }
  if (shape.tokenizer) {
    metadata.push(...shape.tokenizer);
  } else {
    metadata.push(
      ['tokenizer.ggml.model', 'string', 'llama'],
      ['tokenizer.ggml.tokens', ['string'], v.tokens],
      ['tokenizer.ggml.scores', ['f32'], v.scores],
      ['tokenizer.ggml.token_type', ['i32'], v.types], // i32, as llama.cpp requires
      ['tokenizer.ggml.bos_token_id', 'u32', 1],
      ['tokenizer.ggml.eos_token_id', 'u32', 2],
      ['tokenizer.ggml.unknown_token_id', 'u32', 0],
    );
  }
  if (chatTemplate) metadata.push(['tokenizer.chat_template', 'string', chatTemplate]);
  return metadata;
}

// Tensor list with each tensor's content: uniform values in [-scale, scale] (around `center` for norms and
// factors). Q and K are scaled up so attention is peaked as in trained models (windows and soft-caps then
// change the result), and the FFN matrices so the FFN weighs on the output as much as attention does (a wrong
// FFN weight then changes the answer); the final norm's weights around 4 spread the logits over a few units,
// as trained models' do, without the embeddings outweighing the layers (a tied output would then echo the
// input token).
function tensorsFor(shape, traits, headDim, types) {
  const { dim, layers, heads, kvHeads, ffn, vocab } = shape;
  const qDim = heads * headDim;
  const kvDim = kvHeads * headDim;
  const unit = 1 / Math.sqrt(dim);
  const norm = (name, length = dim) => ({ name, dims: [length], type: 'F32', scale: 0.25, center: 1 });
  const matrix = (name, cols, rows, type, scale = unit) => ({ name, dims: [cols, rows], type, scale });
  const tied = traits.tiedOnly || shape.tiedOutput;
  // Gemma multiplies the embeddings by sqrt(dim) on the way in; with a tied output, the input token's own
  // logit would then stand out (the model echoes its input) unless the embeddings are smaller and the final
  // norm makes up the logits' spread.
  const embedding = traits.scaledEmbedding ? unit / 4 : unit;
  const finalNorm = traits.scaledEmbedding ? { scale: 4, center: 16 } : { scale: 1, center: 4 };
  const tensors = [matrix('token_embd.weight', dim, vocab, tied ? types.output : types.embedding, embedding), { ...norm('output_norm.weight'), ...finalNorm }];
  if (!tied) tensors.push(matrix('output.weight', dim, vocab, types.output));
  if (shape.ropeFreqs) {
    // Llama 3's rope_freqs: each frequency is divided by its factor.
    tensors.push({ name: 'rope_freqs.weight', dims: [headDim / 2], type: 'F32', scale: 1.5, center: 2.5 });
  }
  if (shape.ropeScaling && shape.ropeScaling.type === 'longrope') {
    tensors.push(
      { name: 'rope_factors_long.weight', dims: [headDim / 2], type: 'F32', scale: 4, center: 5 },
      { name: 'rope_factors_short.weight', dims: [headDim / 2], type: 'F32', scale: 0.5, center: 1.5 },
    );
  }
  // Every layer matrix and bias drawn from `layerScale` times its usual range (the norms keep theirs).
  const layerScale = shape.layerScale ?? 1;
  const layerMatrix = (name, cols, rows, type, scale = unit) => matrix(name, cols, rows, type, scale * layerScale);
  const bias = (name, length) => ({ name, dims: [length], type: 'F32', scale: 0.5 * layerScale });
  for (let l = 0; l < layers; l++) {
    const p = `blk.${l}.`;
    const vType = l % 2 === 0 ? types.moreBits : types.attention;
    const downType = l % 2 === 0 ? types.moreBits : types.ffn;
    tensors.push(norm(`${p}attn_norm.weight`));
    if (traits.latent) {
      tensors.push(...latentTensors(shape, p, types.attention, layerMatrix, norm));
    } else if (traits.fusedQkv) {
      tensors.push(layerMatrix(`${p}attn_qkv.weight`, dim, qDim + 2 * kvDim, types.attention, 3 * unit));
    } else {
      tensors.push(
        layerMatrix(`${p}attn_q.weight`, dim, qDim, types.attention, 3 * unit),
        layerMatrix(`${p}attn_k.weight`, dim, kvDim, types.attention, 3 * unit),
        layerMatrix(`${p}attn_v.weight`, dim, kvDim, vType),
      );
    }
    if (traits.qkvBias) {
      tensors.push(
        bias(`${p}attn_q.bias`, qDim),
        bias(`${p}attn_k.bias`, kvDim),
        bias(`${p}attn_v.bias`, kvDim),
      );
    }
    if (traits.qkNorm) tensors.push(norm(`${p}attn_q_norm.weight`, headDim), norm(`${p}attn_k_norm.weight`, headDim));
    const outputWidth = traits.latent ? heads * shape.mla.vHeadDim : qDim;
    tensors.push(layerMatrix(`${p}attn_output.weight`, outputWidth, dim, types.attention, Math.sqrt(dim / outputWidth) * unit));
    if (traits.postNorms) tensors.push(norm(`${p}post_attention_norm.weight`));
    tensors.push(norm(`${p}ffn_norm.weight`));
    if (traits.fusedGateUp) {
      tensors.push(layerMatrix(`${p}ffn_up.weight`, dim, 2 * ffn, types.ffn, 2 * unit));
    } else {
      tensors.push(layerMatrix(`${p}ffn_gate.weight`, dim, ffn, types.ffn, 2 * unit), layerMatrix(`${p}ffn_up.weight`, dim, ffn, types.ffn, 2 * unit));
    }
    tensors.push(layerMatrix(`${p}ffn_down.weight`, ffn, dim, downType, 2 / Math.sqrt(ffn)));
    if (traits.postNorms) tensors.push(norm(`${p}post_ffw_norm.weight`));
  }
  return tensors;
}

// Writes one tensor's bytes: its own seeded stream, repeated with a shifting phase past POOL_VALUES. A tensor
// with `encodedAs` is drawn as that type and written decoded, in F32.
function writeTensor(fd, t, seed) {
  const next = xorshift(streamSeed(seed, t.name));
  const source = t.encodedAs || t.type;
  const { block, bytes } = TENSOR[source];
  const totalBlocks = t.dims.reduce((a, b) => a * b, 1) / block;
  const poolBlocks = Math.min(totalBlocks, Math.max(1, Math.floor(POOL_VALUES / block)));
  let pool;
  if (t.center !== undefined) {
    pool = Buffer.alloc(poolBlocks * 4);
    for (let i = 0; i < poolBlocks; i++) pool.writeFloatLE(t.center + (next() - 0.5) * 2 * t.scale, i * 4);
  } else {
    pool = encodeBlocks(source, poolBlocks, t.scale, next);
    if (t.encodedAs) pool = Buffer.from(decodeBlocks(source, pool).buffer);
  }
  const unit = pool.length / poolBlocks;
  for (let done = 0, pass = 0; done < t.bytes; pass++) {
    const start = ((pass * 7) % poolBlocks) * unit;
    const n = Math.min(pool.length - start, t.bytes - done);
    fs.writeSync(fd, pool, start, n);
    done += n;
  }
}

let halfTable = null;

// Every half's value, built on first use.
function fromHalf(h) {
  if (!halfTable) {
    halfTable = new Float32Array(65536);
    for (let bits = 0; bits < 65536; bits++) {
      const sign = bits & 0x8000 ? -1 : 1;
      const exponent = (bits >> 10) & 31;
      const mantissa = bits & 1023;
      if (exponent === 0) halfTable[bits] = sign * mantissa * 2 ** -24;
      else if (exponent === 31) halfTable[bits] = mantissa ? NaN : sign * Infinity;
      else halfTable[bits] = sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
    }
  }
  return halfTable[h];
}

// IQ4_NL's and IQ4_XS's table of 16 non-linear levels.
const IQ4_LEVELS = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

// A Q4_K / Q5_K block's 6-bit scale and min of sub-block j, from its 12 packed bytes at `at`.
function scaleMinK4(b, at, j) {
  if (j < 4) return [b[at + j] & 63, b[at + j + 4] & 63];
  return [(b[at + j + 4] & 0xf) | ((b[at + j - 4] >> 6) << 4), (b[at + j + 4] >> 4) | ((b[at + j] >> 6) << 4)];
}

// A Q3_K block's 16 signed 6-bit scales (minus 32), from its 12 packed bytes at `at`.
function scalesQ3K(b, at) {
  const out = [];
  for (let j = 0; j < 16; j++) {
    const low = j < 8 ? (b[at + j] >> 0) & 0xf : (b[at + j - 8] >> 4) & 0xf;
    const high = (b[at + 8 + (j % 4)] >> (2 * Math.floor(j / 4))) & 3;
    out.push((low | (high << 4)) - 32);
  }
  return out;
}

// The values `encodeBlocks` encoded, as GGML's dequantizers read them: an independent decoding of each format
// that gives the reference script a second model with the same weights in F32.
function decodeBlocks(type, buf) {
  const { block, bytes } = TENSOR[type];
  const blocks = buf.length / bytes;
  const y = new Float32Array(blocks * block);
  const half = (at) => fromHalf(buf.readUInt16LE(at));
  for (let b = 0; b < blocks; b++) {
    const at = b * bytes;
    const o = b * block;
    switch (type) {
      case 'F32':
        y[o] = buf.readFloatLE(at);
        break;
      case 'F16':
        y[o] = half(at);
        break;
      case 'BF16':
        scratchBits[0] = buf.readUInt16LE(at) << 16;
        y[o] = scratch[0];
        break;
      case 'Q8_0':
        for (let i = 0; i < 32; i++) y[o + i] = half(at) * buf.readInt8(at + 2 + i);
        break;
      case 'Q4_0':
      case 'Q4_1':
      case 'IQ4_NL': {
        const d = half(at);
        const m = type === 'Q4_1' ? half(at + 2) : 0;
        const qs = at + (type === 'Q4_1' ? 4 : 2);
        for (let j = 0; j < 16; j++) {
          const low = buf[qs + j] & 0xf;
          const high = buf[qs + j] >> 4;
          if (type === 'Q4_0') [y[o + j], y[o + j + 16]] = [d * (low - 8), d * (high - 8)];
          else if (type === 'Q4_1') [y[o + j], y[o + j + 16]] = [d * low + m, d * high + m];
          else [y[o + j], y[o + j + 16]] = [d * IQ4_LEVELS[low], d * IQ4_LEVELS[high]];
        }
        break;
      }
      case 'Q5_0':
      case 'Q5_1': {
        const d = half(at);
        const m = type === 'Q5_1' ? half(at + 2) : 0;
        const qhAt = at + (type === 'Q5_1' ? 4 : 2);
        const qh = buf.readUInt32LE(qhAt);
        const offset = type === 'Q5_0' ? 16 : 0;
        for (let j = 0; j < 16; j++) {
          const low = (buf[qhAt + 4 + j] & 0xf) | (((qh >>> j) & 1) << 4);
          const high = (buf[qhAt + 4 + j] >> 4) | (((qh >>> (j + 16)) & 1) << 4);
          y[o + j] = d * (low - offset) + m;
          y[o + j + 16] = d * (high - offset) + m;
        }
        break;
      }
      case 'Q2_K': {
        const d = half(at + 80);
        const min = half(at + 82);
        let k = o;
        for (let n = 0, is = 0; n < 2; n++) {
          const q = at + 16 + 32 * n;
          for (let shift = 0; shift < 8; shift += 2) {
            for (const part of [0, 16]) {
              const sc = buf[at + is++];
              for (let l = 0; l < 16; l++) y[k++] = d * (sc & 0xf) * ((buf[q + part + l] >> shift) & 3) - min * (sc >> 4);
            }
          }
        }
        break;
      }
      case 'Q3_K': {
        const d = half(at + 108);
        const scales = scalesQ3K(buf, at + 96);
        let k = o;
        let mask = 1;
        for (let n = 0, is = 0; n < 2; n++) {
          const q = at + 32 + 32 * n;
          for (let shift = 0; shift < 8; shift += 2, mask <<= 1) {
            for (const part of [0, 16]) {
              const dl = d * scales[is++];
              for (let l = 0; l < 16; l++) y[k++] = dl * (((buf[q + part + l] >> shift) & 3) - (buf[at + part + l] & mask ? 0 : 4));
            }
          }
        }
        break;
      }
      case 'Q4_K':
      case 'Q5_K': {
        const d = half(at);
        const min = half(at + 2);
        const five = type === 'Q5_K';
        const qs = at + (five ? 48 : 16);
        let k = o;
        for (let j = 0; j < 4; j++) {
          const [sc1, m1] = scaleMinK4(buf, at + 4, 2 * j);
          const [sc2, m2] = scaleMinK4(buf, at + 4, 2 * j + 1);
          for (let l = 0; l < 32; l++) y[k++] = d * sc1 * ((buf[qs + 32 * j + l] & 0xf) + (five && buf[at + 16 + l] & (1 << (2 * j)) ? 16 : 0)) - min * m1;
          for (let l = 0; l < 32; l++) y[k++] = d * sc2 * ((buf[qs + 32 * j + l] >> 4) + (five && buf[at + 16 + l] & (2 << (2 * j)) ? 16 : 0)) - min * m2;
        }
        break;
      }
      case 'Q6_K': {
        const d = half(at + 208);
        for (let n = 0; n < 2; n++) {
          const ql = at + 64 * n;
          const qh = at + 128 + 32 * n;
          const sc = at + 192 + 8 * n;
          const yo = o + 128 * n;
          for (let l = 0; l < 32; l++) {
            const is = l >> 4;
            const h = buf[qh + l];
            y[yo + l] = d * buf.readInt8(sc + is) * (((buf[ql + l] & 0xf) | ((h & 3) << 4)) - 32);
            y[yo + l + 32] = d * buf.readInt8(sc + is + 2) * (((buf[ql + l + 32] & 0xf) | (((h >> 2) & 3) << 4)) - 32);
            y[yo + l + 64] = d * buf.readInt8(sc + is + 4) * (((buf[ql + l] >> 4) | (((h >> 4) & 3) << 4)) - 32);
            y[yo + l + 96] = d * buf.readInt8(sc + is + 6) * (((buf[ql + l + 32] >> 4) | (((h >> 6) & 3) << 4)) - 32);
          }
        }
        break;
      }
      case 'IQ4_XS': {
        const d = half(at);
        const high = buf.readUInt16LE(at + 2);
        for (let ib = 0; ib < 8; ib++) {
          const ls = ((buf[at + 4 + (ib >> 1)] >> (4 * (ib % 2))) & 0xf) | (((high >> (2 * ib)) & 3) << 4);
          const dl = d * (ls - 32);
          for (let j = 0; j < 16; j++) {
            const q = buf[at + 8 + 16 * ib + j];
            y[o + 32 * ib + j] = dl * IQ4_LEVELS[q & 0xf];
            y[o + 32 * ib + j + 16] = dl * IQ4_LEVELS[q >> 4];
          }
        }
        break;
      }
      default:
        throw new Error(`no decoder for ${type}`);
    }
  }
  return y;
}

// Writes the bytes a shape.tensorData function gives for tensor `t`, encoded as t.encodedAs || t.type (decoded
// to F32 when the file stores the decoded values).
function writeGivenTensor(fd, t, fill) {
  const type = t.encodedAs || t.type;
  let data = fill({ name: t.name, dims: [...t.dims], type });
  const bytes = (t.dims.reduce((a, b) => a * b, 1) / TENSOR[type].block) * TENSOR[type].bytes;
  if (!Buffer.isBuffer(data) || data.length !== bytes) throw new Error(`tensorData['${t.name}'] must give a Buffer of ${bytes} bytes (${type})`);
  if (t.encodedAs) data = Buffer.from(decodeBlocks(type, data).buffer);
  fs.writeSync(fd, data);
}

/**
 * Writes a model with seeded random weights.
 * shape: { architecture = 'llama' (also mistral, qwen2, qwen3, gemma2, gemma3, phi3, deepseek2), dim, layers, heads,
 *   kvHeads, headDim = dim / heads, ffn, vocab, context = 4096, name, chatTemplate, seed = 1,
 *   type: a weight type (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL,
 *     IQ4_XS) or a mix as llama.cpp's quantizer writes it (Q4_K_M, Q5_K_M: Q6_K output and V / down of every
 *     other layer; Q3_K_M: Q6_K output, Q5_K V / down of every other layer),
 *   types: per-role overrides { embedding, output, attention, moreBits, ffn },
 *   tiedOutput (no output.weight; gemma always ties), ropeFreqs (Llama 3's rope_freqs tensor), ropeBase,
 *   window (attention.sliding_window), attnSoftcap / finalSoftcap (gemma2; finalSoftcap on others too),
 *   ropeScaling: { type, factor, originalContext, attnFactor } ('longrope' adds phi3's factor tensors),
 *   mla (deepseek2): { kvLoraRank, qLoraRank (0: attn_q), ropeDim, qkNopeDim, vHeadDim, denseLayers = layers },
 *   rmsEps, poolingType (<arch>.pooling_type, llama.cpp's enum: 0 none, 1 mean, 2 cls, 3 last, 4 rank),
 *   tokenizer: tokenizer.ggml.* metadata entries to carry instead of the synthetic vocabulary (`vocab` must be
 *     their token count: see test/support/tokenizer-gguf.js and sentencepiece-model.js),
 *   decoded: every tensor holds the same values, decoded and stored as F32 (the model with exactly the same
 *     weights that no quantized kernel touches),
 *   layerScale: every layer matrix and bias drawn from this times its usual range (default 1; small values give
 *     layers that barely change the residual stream),
 *   tensorData: { [tensor name]: ({ name, dims, type }) => Buffer } the named tensors' encoded bytes instead of
 *     random ones (bench/copier-model.js builds a model's embeddings and output matrix this way) }.
 */
function writeModel(file, shape) {
  const architecture = shape.architecture || 'llama';
  const traits = TRAITS[architecture];
  if (!traits) throw new Error(`unknown architecture '${architecture}' (architectures: ${ARCHITECTURES.join(', ')})`);
  const headDim = shape.headDim || shape.dim / shape.heads;
  const types = matrixTypes(shape);
  const metadata = metadataFor(shape, architecture, traits, headDim, vocabulary(shape.vocab, traits.controls));
  const tensors = tensorsFor(shape, traits, headDim, types);
  if (shape.decoded) {
    for (const t of tensors.filter((x) => x.type !== 'F32')) Object.assign(t, { encodedAs: t.type, type: 'F32' });
  }
  const header = encodeHeader(metadata, tensors);
  const seed = shape.seed ?? 1;
  const tmp = `${file}.partial`;
  const fd = fs.openSync(tmp, 'w');
  try {
    fs.writeSync(fd, header);
    let written = 0;
    for (const t of tensors) {
      const pad = t.offset - written;
      if (pad > 0) fs.writeSync(fd, Buffer.alloc(pad));
      const fill = shape.tensorData?.[t.name];
      if (fill) writeGivenTensor(fd, t, fill);
      else writeTensor(fd, t, seed);
      written = t.offset + t.bytes;
    }
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
  return file;
}

/** writeModel with the llama architecture unless shape.architecture says otherwise. */
function writeLlamaModel(file, shape) {
  return writeModel(file, shape);
}

module.exports = { writeModel, writeLlamaModel, vocabulary, decodeBlocks, ARCHITECTURES, WEIGHT_TYPES, MIXES };
// For writers of other models' metadata (test/support/tokenizer-gguf.js): the header, then each tensor.
Object.assign(module.exports, { encodeHeader, writeTensor });
