'use strict';
// kvCache.offload from JavaScript: prefixes the pool evicted come back from the memory and disk tiers with
// a cold run's answer, counted per tier in cache.stats(); the disk tier outlives the engine; bad options
// are clear errors.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { Engine } = require('../..');
const { describeWithModels } = require('../support/models');

// Long, distinct prompts: each fills most of a pool that holds two of them.
const prompts = [0, 1, 2, 3].map((i) => `Topic ${i}: ${'the quick brown fox jumps over the lazy dog and then some more words follow '.repeat(4 + i)}`);
const greedy = { temperature: 0, maxTokens: 4 };

describeWithModels('KV offload tiers', ['synth-tiny-f16.gguf'], (modelPath) => {
  let folder;
  beforeEach(() => {
    folder = fs.mkdtempSync(path.join(os.tmpdir(), 'pagedlm-offload-'));
  });
  afterEach(() => fs.rmSync(folder, { recursive: true, force: true }));

  const load = (offload) => Engine.load(modelPath, { contextLength: 256, kvCache: { blocks: 24, offload } });

  async function coldAnswers() {
    const engine = await Engine.load(modelPath, { contextLength: 256, kvCache: { blocks: 128 } });
    try {
      const answers = [];
      for (const p of prompts) answers.push((await engine.generate(p, greedy)).tokens);
      return answers;
    } finally {
      await engine.close();
    }
  }

  test('returning prefixes come back from each tier with a cold run\'s tokens', async () => {
    const cold = await coldAnswers();
    for (const offload of [{ memory: 8 << 20 }, { disk: 64 << 20, path: folder }]) {
      const engine = await load(offload);
      try {
        for (const p of prompts) await engine.generate(p, greedy);
        for (let i = 0; i < prompts.length; i++) expect((await engine.generate(prompts[i], greedy)).tokens).toEqual(cold[i]);
        const { offload: tiers, evictions } = engine.cache.stats();
        expect(evictions).toBeGreaterThan(0);
        const tier = offload.memory ? tiers.memory : tiers.disk;
        expect(tier.hits).toBeGreaterThan(0);
        expect(tier.bytes).toBeLessThanOrEqual(tier.capacityBytes);
        expect(tiers.writeErrors + tiers.readErrors).toBe(0);
      } finally {
        await engine.close();
      }
    }
    // A new engine on the same folder finds the blocks the last one wrote.
    const restarted = await load({ disk: 64 << 20, path: folder });
    try {
      expect(restarted.cache.stats().offload.disk.blocks).toBeGreaterThan(0);
      expect((await restarted.generate(prompts[0], greedy)).tokens).toEqual(cold[0]);
      expect(restarted.cache.stats().offload.disk.hits).toBeGreaterThan(0);
    } finally {
      await restarted.close();
    }
  });

  test('without kvCache.offload there are no tiers', async () => {
    const engine = await Engine.load(modelPath, { contextLength: 128, kvCache: { blocks: 16 } });
    expect(engine.cache.stats().offload).toBeNull();
    await engine.close();
  });

  test('bad options are clear errors', async () => {
    await expect(load({ memory: -1 })).rejects.toThrow(new RangeError('kvCache.offload.memory must be at least 0 and at most 9007199254740991, got -1'));
    await expect(load({ memory: '2GB' })).rejects.toThrow(new TypeError('kvCache.offload.memory must be a number, got string 2GB'));
    await expect(load({ disk: 1 << 20 })).rejects.toThrow(new TypeError('kvCache.offload.disk needs kvCache.offload.path: the folder of the disk tier'));
    await expect(load({ path: folder })).rejects.toThrow(new TypeError("kvCache.offload.path needs kvCache.offload.disk: the disk tier's size in bytes"));
    await expect(load({})).rejects.toThrow(new TypeError('kvCache.offload needs memory or disk: a tier size in bytes'));
    await expect(load({ memroy: 1 })).rejects.toThrow("unknown option 'memroy' in kvCache.offload: did you mean 'memory'?");
    await expect(load({ memory: 10 })).rejects.toThrow(/kvCache.offload.memory \(10 bytes\) holds no KV block/);
    await expect(load({ disk: 10, path: folder })).rejects.toThrow(/kvCache.offload.disk \(10 bytes\) holds no KV block/);
  });
});
