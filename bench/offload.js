'use strict';
// npm run bench offload: time to first token on a returning prefix restored from the KV offload tiers
// (kvCache.offload), against recomputing it, in one run on one engine. The pool holds 2 prompts, the memory
// tier 3, the disk tier all 8; the workload cycles through 8 long prefixes, each visit with a new 8-token
// question. Where each visit's prefix came from is read off cache.stats().offload's per-tier hit counts:
// the first pass computes every prefix (the recompute times), the next passes find them in one tier or the
// other. Model: the Llama-1B-shaped Q4_K copier (bench/copier-model.js), generated once into the cache folder.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { Engine } = require('..');
const { ensureModel } = require('./models');
const { COPIER_1B, copierShape } = require('./copier-model');

const quick = process.env.PAGEDLM_BENCH_QUICK === '1';
const threads = Number(process.env.PAGEDLM_BENCH_THREADS) || os.cpus().length;
const PREFIXES = 8;

function median(values) {
  const s = [...values].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)] : NaN;
}

function tokens(seed, length, vocab) {
  const ids = [];
  for (let i = 0; i < length; i++) ids.push(300 + ((seed * 104729 + i * 7919) % (vocab - 300)));
  return ids;
}

async function offloadSection() {
  const prefixTokens = quick ? 256 : 512;
  const file = ensureModel(copierShape(COPIER_1B));
  const folder = fs.mkdtempSync(path.join(os.tmpdir(), 'pagedlm-offload-bench-'));
  const blockSize = 16;
  const promptBlocks = Math.ceil((prefixTokens + 8 + 2) / blockSize);
  const probe = await Engine.inspect(file, { kvCache: { blockSize } });
  const blockBytes = probe.kvBytesPerToken.f16 * blockSize;
  const engine = await Engine.load(file, {
    device: 'cpu',
    threads,
    contextLength: prefixTokens + 64,
    kvCache: { blockSize, blocks: 2 * promptBlocks + 1, offload: { memory: 3 * promptBlocks * blockBytes, disk: 3 * PREFIXES * promptBlocks * blockBytes, path: folder } },
  });
  try {
    const vocab = engine.info().vocabSize;
    const prefixes = Array.from({ length: PREFIXES }, (_, p) => [1, ...tokens(p + 1, prefixTokens - 1, vocab)]);
    const times = { recompute: [], memory: [], disk: [] };
    let visit = 0;
    async function ask(p) {
      const before = engine.cache.stats();
      const r = await engine.generate([...prefixes[p], ...tokens(1000 + visit++, 8, vocab)], { maxTokens: 1, temperature: 0 });
      const after = engine.cache.stats();
      const memoryHits = after.offload.memory.hits - before.offload.memory.hits;
      const diskHits = after.offload.disk.hits - before.offload.disk.hits;
      // Under a block of hits is a partial match of the shared first token: computed all the same.
      const computed = after.hitTokens - before.hitTokens < blockSize;
      const tier = computed ? 'recompute' : memoryHits > 0 && diskHits === 0 ? 'memory' : diskHits > 0 && memoryHits === 0 ? 'disk' : null;
      if (tier) times[tier].push(r.timings.ttftMs);
    }
    await engine.generate(tokens(7, 16, vocab), { maxTokens: 1 });  // warm-up
    for (let p = 0; p < PREFIXES; p++) await ask(p);
    const rounds = quick ? 1 : 2;
    for (let round = 0; round < rounds; round++) {
      // In order: each prefix was last seen 8 visits ago, on disk by now. Then a step back of two: the prefix
      // the pool pushed out two visits ago, in the memory tier.
      for (let p = 0; p < PREFIXES; p++) await ask(p);
      for (let p = PREFIXES - 1; p >= 2; p -= 1) {
        await ask(p);
        await ask(p - 2);
      }
    }
    const recompute = median(times.recompute);
    const row = (name, values, target) => ({
      source: name,
      visits: values.length,
      'ttft p50 ms': median(values).toFixed(1),
      'vs recompute': name === 'recompute' ? '1x' : `${(recompute / median(values)).toFixed(1)}x`,
      target,
    });
    console.log(`\noffload tiers: llama-1b-shaped Q4_K, ${prefixTokens}-token prefixes, ${PREFIXES} cycling through a pool of 2 prompts (memory tier 3, disk tier all), ${threads} threads`);
    console.table([row('recompute', times.recompute, ''), row('memory tier', times.memory, '>= 10x'), row('disk tier', times.disk, '>= 3x')]);
    const { offload } = engine.cache.stats();
    console.log(`tiers: ${JSON.stringify(offload)}`);
  } finally {
    await engine.close();
    fs.rmSync(folder, { recursive: true, force: true });
  }
}

module.exports = { offloadSection };
