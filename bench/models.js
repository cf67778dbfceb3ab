'use strict';
// Synthetic benchmark models, generated once into PAGEDLM_BENCH_CACHE (default <tmp>/pagedlm-bench).
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { writeLlamaModel } = require('../test/support/gguf-writer');

// Llama-3.2-1B's shape (dim 2048, 16 layers, 32 heads / 8 KV heads, ffn 8192; vocab 32000), F16: about 2.2 GB.
const LLAMA_1B = { dim: 2048, layers: 16, heads: 32, kvHeads: 8, ffn: 8192, vocab: 32000, context: 4096, type: 'F16', name: 'synthetic-llama-1b-f16' };

const cacheDir = process.env.PAGEDLM_BENCH_CACHE || path.join(os.tmpdir(), 'pagedlm-bench');

/** The path of `shape`'s model file, written first if it is not in the cache folder yet. */
function ensureModel(shape) {
  fs.mkdirSync(cacheDir, { recursive: true });
  const file = path.join(cacheDir, `${shape.name}.gguf`);
  if (!fs.existsSync(file)) {
    process.stderr.write(`generating ${file} ...\n`);
    writeLlamaModel(file, shape);
  }
  return file;
}

module.exports = { LLAMA_1B, cacheDir, ensureModel };
