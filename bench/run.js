#!/usr/bin/env node
'use strict';
// npm run bench [-- section...]: pagedlm on the CPU, sections (all by default):
//   speed   prefill and decode tokens/s: the shared tiny models, and a Llama-1B-shaped synthetic F16 model
//           (dim 2048, 16 layers, 32 heads / 8 KV heads, ffn 8192, vocab 32000) generated once into the
//           cache folder (about 2.2 GB)
//   prefix  time to first token with a 1,000-token prefix already cached, against cold; prefill tokens
//           saved over a 10-turn chat
//   kv      pool bytes per token of K/V type pairs against docs/kv-memory.md's formula
//   batch   aggregate decode tokens/s with 1, 4, 8 and 16 concurrent streams (as ratios to 1) and time to
//           first token p50/p99 under that load, on the Llama-1B-shaped model
//   constrained  a grammar's share of a decode step (JSON Schema, any JSON; greedy and sampled) on 1B-shaped
//           Q4_K models with 32K and 128K real vocabularies, schema compile times (bench/constrained.js)
//   speculative  decode tokens/s with speculative decoding against plain, same run: a copy-heavy request on a
//           1B-shaped Q4_K model that copies, the same with the document in the prefix cache only,
//           aidreams260K's repeating output, random text; acceptance, tokens per step, output identity
//           (bench/speculative.js)
//   offload time to first token on a returning prefix restored from the memory and the disk tier of
//           kvCache.offload against recomputing it, 8 prefixes through a pool of 2 (bench/offload.js)
// --quick (or PAGEDLM_BENCH_QUICK=1): smaller runs. Environment: PAGEDLM_BENCH_CACHE (model folder, default
// <tmp>/pagedlm-bench), PAGEDLM_BENCH_THREADS.
// The sections read PAGEDLM_BENCH_QUICK when they load.
if (process.argv.includes('--quick')) process.env.PAGEDLM_BENCH_QUICK = '1';
const os = require('node:os');
const { Engine } = require('..');
const { LLAMA_1B, ensureModel } = require('./models');
const { sharedModel } = require('../test/support/models');
const { constrainedSection } = require('./constrained');
const { speculativeSection } = require('./speculative');
const { offloadSection } = require('./offload');

const quick = process.env.PAGEDLM_BENCH_QUICK === '1';
const threads = Number(process.env.PAGEDLM_BENCH_THREADS) || os.cpus().length;


function median(values) {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function promptIds(length, vocab) {
  const ids = [1];
  for (let i = 1; i < length; i++) ids.push(300 + ((i * 7919) % (vocab - 300)));
  return ids;
}

async function measure(label, file, { prefillTokens, decodeTokens, runs }) {
  const engine = await Engine.load(file, { device: 'cpu', threads, contextLength: Math.max(1024, prefillTokens + 64), kvCache: { dtype: 'f16' } });
  try {
    const info = engine.info();
    const vocab = info.vocabSize;
    await engine.generate(promptIds(16, vocab), { maxTokens: 2, temperature: 0 }); // warm-up
    const prefill = [];
    const decode = [];
    for (let r = 0; r < runs; r++) {
      await engine.cache.clear(); // measure computing the prompt, not finding it cached
      const p = await engine.generate(promptIds(prefillTokens, vocab), { maxTokens: 1, temperature: 0 });
      prefill.push(prefillTokens / (p.timings.ttftMs / 1000));
      await engine.cache.clear();
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

async function speedSection() {
  const rows = [];
  for (const name of ['stories260K.gguf', 'synth-tiny-f16.gguf']) {
    const file = sharedModel(name);
    if (file) rows.push(await measure(name, file, { prefillTokens: 128, decodeTokens: 128, runs: 3 }));
  }
  const big = ensureModel(LLAMA_1B);
  rows.push(await measure('llama-1b-shaped F16', big, quick ? { prefillTokens: 64, decodeTokens: 8, runs: 1 } : { prefillTokens: 512, decodeTokens: 32, runs: 3 }));
  console.log(`\nspeed: ${os.cpus()[0].model}, ${threads} threads, median of runs`);
  console.table(rows);
}

async function prefixSection() {
  const file = ensureModel(LLAMA_1B);
  const prefixTokens = quick ? 200 : 1000;
  const engine = await Engine.load(file, { device: 'cpu', threads, contextLength: 2048, kvCache: { blocks: 512 } });
  try {
    const vocab = engine.info().vocabSize;
    const prefix = promptIds(prefixTokens, vocab);
    const question = (seed) => prefix.concat(Array.from({ length: 16 }, (_, i) => 300 + ((seed * 131 + i * 17) % 20000)));
    const cold = [];
    const warm = [];
    for (let run = 0; run < (quick ? 1 : 2); run++) {
      await engine.cache.clear();
      cold.push((await engine.generate(question(run * 2), { maxTokens: 1, temperature: 0 })).timings.ttftMs);
      warm.push((await engine.generate(question(run * 2 + 1), { maxTokens: 1, temperature: 0 })).timings.ttftMs);
    }
    console.log(`\nprefix cache: ${prefixTokens}-token shared prefix + 16 new tokens, llama-1b-shaped F16`);
    console.table([{ 'cold TTFT ms': median(cold).toFixed(0), 'cached-prefix TTFT ms': median(warm).toFixed(0), 'speed-up': `${(median(cold) / median(warm)).toFixed(1)}x` }]);
  } finally {
    await engine.close();
  }

  // A 10-turn chat: each prompt is the whole conversation so far; the cache serves what earlier turns computed.
  const chatModel = sharedModel('synth-tiny-f16.gguf') ?? file;
  const chat = await Engine.load(chatModel, { device: 'cpu', threads, contextLength: 4096 });
  try {
    let history = promptIds(200, chat.info().vocabSize); // a system prompt
    let promptTokens = 0;
    for (let turn = 0; turn < 10; turn++) {
      history = history.concat(Array.from({ length: 30 }, (_, i) => 400 + ((turn * 37 + i * 11) % 20000))); // the user's message
      promptTokens += history.length;
      const answer = await chat.generate(history, { maxTokens: 40, temperature: 0, ignoreEos: true });
      history = history.concat(answer.tokens);
    }
    const { hitTokens } = chat.cache.stats();
    console.log('\n10-turn chat (200-token system prompt, 30-token messages, 40-token answers):');
    console.table([{ 'prompt tokens': promptTokens, 'served from cache': hitTokens, computed: promptTokens - hitTokens, saved: `${((100 * hitTokens) / promptTokens).toFixed(1)}%` }]);
  } finally {
    await chat.close();
  }
}

async function kvSection() {
  const file = ensureModel(LLAMA_1B);
  const rows = [];
  const pairs = [['f32', 'f32'], ['f16', 'f16'], ['bf16', 'bf16'], ['int8', 'int8'], ['fp8', 'fp8'], ['int4', 'int4'], ['int8', 'int4'], ['int4', 'int8']];
  for (const [kType, vType] of pairs) {
    const engine = await Engine.load(file, { device: 'cpu', threads, contextLength: 256, kvCache: { kType, vType, blocks: 64 }, prefault: false });
    const info = engine.info();
    const stats = engine.cache.stats();
    await engine.close();
    // One block's bytes over its tokens: int4 K's scales belong to the block.
    const formula = Engine.estimateKvBytes({ model: info, contextLength: info.kvBlockSize, kType, vType, blockSize: info.kvBlockSize }) / info.kvBlockSize;
    rows.push({ 'K/V': kType === vType ? kType : `${kType}/${vType}`, 'bytes/token (pool)': stats.bytesTotal / (stats.blocksTotal * stats.blockSize), 'bytes/token (formula)': formula, 'GiB per 4k-token sequence': ((formula * 4096) / 2 ** 30).toFixed(3) });
  }
  console.log('\nKV bytes per token, llama-1b-shaped (16 layers, 8 KV heads of 64):');
  console.table(rows);
}

function percentile(values, p) {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
}

async function batchSection() {
  const file = ensureModel(LLAMA_1B);
  const engine = await Engine.load(file, { device: 'cpu', threads, contextLength: 1024, kvCache: { blocks: 1024 } });
  const decodeTokens = quick ? 8 : 32;
  try {
    const vocab = engine.info().vocabSize;
    await engine.generate(promptIds(16, vocab), { maxTokens: 2, temperature: 0 }); // warm-up
    const rows = [];
    let single = 0;
    for (const streams of [1, 4, 8, 16]) {
      // Every stream: its own 16-token prompt, then decodeTokens greedy tokens. Decode throughput counts the
      // tokens after each stream's first, over the time from the last first token to the last token.
      const firstAt = [];
      const ttft = [];
      const start = performance.now();
      const runs = await Promise.all(
        Array.from({ length: streams }, (_, i) => {
          const prompt = promptIds(16, vocab).map((t, k) => (k === 0 ? t : 300 + ((t + i * 9973) % (vocab - 300))));
          let first = true;
          return engine.generate(prompt, {
            maxTokens: decodeTokens,
            temperature: 0,
            ignoreEos: true,
            onToken: () => {
              if (first) firstAt.push(performance.now());
              first = false;
            },
          }).then((r) => {
            ttft.push(r.timings.ttftMs);
            return r;
          });
        }),
      );
      const end = performance.now();
      const decoded = runs.reduce((sum, r) => sum + r.tokens.length - 1, 0);
      const aggregate = decoded / ((end - Math.max(...firstAt)) / 1000);
      if (streams === 1) single = aggregate;
      rows.push({
        streams,
        'aggregate decode tok/s': aggregate.toFixed(1),
        'vs 1 stream': `${(aggregate / single).toFixed(2)}x`,
        'TTFT p50 ms': percentile(ttft, 50).toFixed(0),
        'TTFT p99 ms': percentile(ttft, 99).toFixed(0),
        'wall s': ((end - start) / 1000).toFixed(1),
      });
    }
    console.log(`\ncontinuous batching: llama-1b-shaped F16, 16-token prompts, ${decodeTokens} tokens per stream, all streams arriving together`);
    console.table(rows);
  } finally {
    await engine.close();
  }
}

const SECTIONS = { speed: speedSection, prefix: prefixSection, kv: kvSection, batch: batchSection, constrained: constrainedSection, speculative: speculativeSection, offload: offloadSection };

async function main() {
  const chosen = process.argv.slice(2).filter((arg) => arg !== '--quick');
  for (const name of chosen) if (!SECTIONS[name]) throw new Error(`unknown section '${name}' (sections: ${Object.keys(SECTIONS).join(', ')})`);
  for (const name of chosen.length ? chosen : Object.keys(SECTIONS)) await SECTIONS[name]();
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
