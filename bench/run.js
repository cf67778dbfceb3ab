#!/usr/bin/env node
'use strict';
// npm run bench: prefill and decode tokens/s of pagedlm on the CPU.
//   - a Llama-1B-shaped synthetic F16 model (dim 2048, 16 layers, 32 heads / 8 KV heads, ffn 8192,
//     vocab 32000), generated once into the cache folder (about 2.2 GB)
//   - the shared tiny models, when present
// Environment: PAGEDLM_BENCH_CACHE (model folder, default <tmp>/pagedlm-bench), PAGEDLM_BENCH_QUICK=1
// (smaller runs), PAGEDLM_BENCH_THREADS.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { Engine } = require('..');
const { writeLlamaModel } = require('../test/support/gguf-writer');
const { sharedModel } = require('../test/support/models');

const quick = process.env.PAGEDLM_BENCH_QUICK === '1';
const threads = Number(process.env.PAGEDLM_BENCH_THREADS) || os.cpus().length;
const cacheDir = process.env.PAGEDLM_BENCH_CACHE || path.join(os.tmpdir(), 'pagedlm-bench');

const LLAMA_1B = { dim: 2048, layers: 16, heads: 32, kvHeads: 8, ffn: 8192, vocab: 32000, context: 4096, type: 'F16', name: 'synthetic-llama-1b-f16' };

function median(values) {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function ensureModel(shape) {
  fs.mkdirSync(cacheDir, { recursive: true });
  const file = path.join(cacheDir, `${shape.name}.gguf`);
  if (!fs.existsSync(file)) {
    process.stderr.write(`generating ${file} ...\n`);
    writeLlamaModel(file, shape);
  }
  return file;
}

function promptIds(length, vocab) {
  const ids = [1];
  for (let i = 1; i < length; i++) ids.push(300 + ((i * 7919) % (vocab - 300)));
  return ids;
}

async function measure(label, file, { prefillTokens, decodeTokens, runs }) {
  const engine = await Engine.load(file, { threads, contextLength: Math.max(1024, prefillTokens + 64), kvCache: { dtype: 'f16' } });
  try {
    const info = engine.info();
    const vocab = info.vocabSize;
    await engine.generate(promptIds(16, vocab), { maxTokens: 2, temperature: 0 }); // warm-up
    const prefill = [];
    const decode = [];
    for (let r = 0; r < runs; r++) {
      const p = await engine.generate(promptIds(prefillTokens, vocab), { maxTokens: 1, temperature: 0 });
      prefill.push(prefillTokens / (p.timings.ttftMs / 1000));
      const d = await engine.generate(promptIds(16, vocab), { maxTokens: decodeTokens, temperature: 0, ignoreEos: true });
      decode.push(d.timings.tokensPerSecond);
    }
    return {
      model: label,
      weights: `${(info.weightBytes / 2 ** 30).toFixed(2)} GiB ${info.tensorType}`,
      'prefill tok/s': median(prefill).toFixed(1),
      'decode tok/s': median(decode).toFixed(2),
      'weights read/s at decode': `${((median(decode) * info.weightBytes) / 1e9).toFixed(1)} GB/s`,
      kernels: `${info.cpuKernels} x${info.threads}`,
    };
  } finally {
    await engine.close();
  }
}

async function main() {
  const rows = [];
  for (const name of ['stories260K.gguf', 'synth-tiny-f16.gguf']) {
    const file = sharedModel(name);
    if (file) rows.push(await measure(name, file, { prefillTokens: 128, decodeTokens: 128, runs: 3 }));
  }
  const big = ensureModel(LLAMA_1B);
  rows.push(await measure('llama-1b-shaped F16', big, quick ? { prefillTokens: 64, decodeTokens: 8, runs: 1 } : { prefillTokens: 512, decodeTokens: 32, runs: 3 }));
  console.log(`pagedlm CPU benchmark: ${os.cpus()[0].model}, ${threads} threads, median of runs`);
  console.table(rows);
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
