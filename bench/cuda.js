#!/usr/bin/env node
'use strict';
// node bench/cuda.js: pagedlm on the CUDA backend (a GPU machine; test/gpu/run.sh runs it), on
// Llama-1B-shaped synthetic F16, Q8_0 and Q4_K models (the quantized ones stay quantized on the device):
//   decode tokens/s at batch 1, 8 and 32 against the step's floor: the bytes a step must read (weights the
//     step touches + every sequence's KV) over the device-to-device copy bandwidth measured by
//     bench/kernels (pagedlm_kernel_bench --copy; PAGEDLM_KERNEL_BENCH names the binary)
//   prefill tokens/s of a 2,048-token prompt
//   time to first token with a 4,000-token prefix cached, against cold (F16 only)
// Environment: PAGEDLM_BENCH_CACHE (model folder, default <tmp>/pagedlm-bench; the same model as npm run
// bench), PAGEDLM_BENCH_QUICK=1.
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { Engine } = require('..');
const { LLAMA_1B, ensureModel } = require('./models');

const quick = process.env.PAGEDLM_BENCH_QUICK === '1';
const PROMPT = 128;
const DECODE = quick ? 32 : 128;

function promptIds(length, vocab, salt = 0) {
  const ids = [1];
  for (let i = 1; i < length; i++) ids.push(300 + ((i * 7919 + salt * 104729) % (vocab - 300)));
  return ids;
}

function copyBandwidth() {
  const binary = process.env.PAGEDLM_KERNEL_BENCH || path.join(__dirname, '..', 'build-gpu', 'bench', 'kernels', 'pagedlm_kernel_bench');
  try {
    return JSON.parse(execFileSync(binary, ['--copy'], { encoding: 'utf8' }).trim()).copyGBs * 1e9;
  } catch {
    return null;
  }
}

async function decodeRate(engine, batch) {
  const vocab = engine.info().vocabSize;
  const started = performance.now();
  const results = await Promise.all(
    Array.from({ length: batch }, (_, i) =>
      engine.generate(promptIds(PROMPT, vocab, i + 1), { maxTokens: DECODE, temperature: 0, ignoreEos: true })));
  const seconds = (performance.now() - started) / 1000 - Math.max(...results.map((r) => r.timings.ttftMs)) / 1000;
  return (batch * (DECODE - 1)) / seconds;
}

const MODELS = [
  { label: 'F16', shape: LLAMA_1B, prefixCache: true },
  { label: 'Q8_0', shape: { ...LLAMA_1B, type: 'Q8_0', name: 'synthetic-llama-1b-q8_0' } },
  { label: 'Q4_K', shape: { ...LLAMA_1B, type: 'Q4_K', name: 'synthetic-llama-1b-q4_k' } },
];

async function main() {
  const copy = copyBandwidth();
  console.log(copy ? `device-to-device copy: ${(copy / 1e9).toFixed(0)} GB/s\n` : 'copy bandwidth unknown (pagedlm_kernel_bench not built): no floor\n');
  for (const model of MODELS) await benchModel(model, copy);
}

async function benchModel(model, copy) {
  const file = ensureModel(model.shape);
  const engine = await Engine.load(file, { device: 'cuda', contextLength: 8192, kvCache: { blocks: 4096 }, maxBatchTokens: 2048 });
  const info = engine.info();
  console.log(`# pagedlm CUDA backend, ${info.gpu}: Llama-1B-shaped ${model.label} (${(info.gpuWeightBytes / 2 ** 30).toFixed(2)} GiB on the device), f16 KV\n`);
  console.log('| figure | value | floor | % of floor |\n|---|---|---|---|');
  await engine.generate(promptIds(16, info.vocabSize), { maxTokens: 4, temperature: 0 }); // warm-up
  for (const batch of [1, 8, 32]) {
    await engine.cache.clear();
    const rate = await decodeRate(engine, batch);
    const contextRead = batch * (PROMPT + DECODE / 2) * info.kvBytesPerToken;
    const floor = copy ? batch / ((info.decodeWeightBytes + contextRead) / copy) : null;
    console.log(`| decode tok/s, batch ${batch} | ${rate.toFixed(0)} | ${floor ? floor.toFixed(0) : '-'} | ${floor ? ((100 * rate) / floor).toFixed(0) + '%' : '-'} |`);
  }
  await engine.cache.clear();
  const prefill = await engine.generate(promptIds(2048, info.vocabSize, 99), { maxTokens: 1, temperature: 0 });
  console.log(`| prefill tok/s (2,048 tokens) | ${(2048 / (prefill.timings.ttftMs / 1000)).toFixed(0)} | | |`);
  if (!model.prefixCache) {
    console.log();
    await engine.close();
    return;
  }
  const prefix = promptIds(4000, info.vocabSize, 7);
  await engine.cache.clear();
  const cold = await engine.generate([...prefix, 11, 12, 13], { maxTokens: 1, temperature: 0 });
  const warm = await engine.generate([...prefix, 21, 22, 23], { maxTokens: 1, temperature: 0 });
  console.log(`| TTFT, 4,000-token prefix: cold / cached | ${cold.timings.ttftMs.toFixed(1)} ms / ${warm.timings.ttftMs.toFixed(1)} ms | | ${(cold.timings.ttftMs / warm.timings.ttftMs).toFixed(1)}x |\n`);
  await engine.close();
}

main().catch((error) => {
  console.error(error.message);
  process.exitCode = 1;
});
