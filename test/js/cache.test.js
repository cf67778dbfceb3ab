'use strict';
// The prefix cache seen from JavaScript: hits reuse the shared start of prompts, give the same output as
// a cold run, stay separate per cacheSalt, and can be cleared.
const { Engine } = require('../..');
const { describeWithModels } = require('../support/models');

const SYSTEM = 'You are a helpful assistant who answers briefly and precisely. Keep every answer under three sentences, cite nothing you cannot verify, and ask for clarification when a question is ambiguous. ';

describeWithModels('prefix cache', ['synth-tiny-f16.gguf'], (modelPath) => {
  let engine;
  beforeEach(async () => {
    engine = await Engine.load(modelPath, { contextLength: 512, kvCache: { blocks: 128 } });
  });
  afterEach(() => engine.close());

  test('a shared system prompt is computed once and the answer equals a cold run', async () => {
    const options = { temperature: 0, maxTokens: 12 };
    const cold = await engine.generate(`${SYSTEM}What is a cache?`, options);
    await engine.cache.clear();
    await engine.generate(`${SYSTEM}Name a colour.`, options);
    const warm = await engine.generate(`${SYSTEM}What is a cache?`, options);
    expect(warm.tokens).toEqual(cold.tokens);
    const stats = engine.cache.stats();
    const shared = engine.tokenize(SYSTEM).length;
    expect(stats.hitTokens).toBeGreaterThanOrEqual(Math.floor(shared / 16) * 16);
    expect(stats.prefixHits).toBeGreaterThanOrEqual(1);
    expect(stats.hitRate).toBeGreaterThan(0);
    expect(stats.blocksInUse).toBe(0);
    expect(stats.blocksCached + stats.blocksFree).toBe(stats.blocksTotal);
    // One vocabulary: engine.stats() counts the pool's blocks as cache.stats() does.
    const { blocksTotal, blocksFree, blocksCached, blocksInUse } = engine.stats();
    expect({ blocksTotal, blocksFree, blocksCached, blocksInUse }).toEqual({
      blocksTotal: stats.blocksTotal, blocksFree: stats.blocksFree, blocksCached: stats.blocksCached, blocksInUse: stats.blocksInUse,
    });
    expect(blocksCached).toBeGreaterThan(0);
    expect(stats).toMatchObject({ blockSize: 16, dtype: 'f16', bytesPerToken: engine.info().kvBytesPerToken });
  });

  test('different cache salts never share', async () => {
    await engine.generate(`${SYSTEM}Hello`, { maxTokens: 2, cacheSalt: 'alice' });
    await engine.generate(`${SYSTEM}Hello`, { maxTokens: 2, cacheSalt: 'bob' });
    expect(engine.cache.stats().hitTokens).toBe(0);
    await engine.generate(`${SYSTEM}Hello`, { maxTokens: 2, cacheSalt: 'alice' });
    expect(engine.cache.stats().hitTokens).toBeGreaterThan(0);
    await expect(engine.generate('x', { cacheSalt: 5 })).rejects.toThrow(TypeError);
  });

  test('clear() drops cached blocks and the next request is a miss', async () => {
    await engine.generate(`${SYSTEM}Hello`, { maxTokens: 2 });
    const cached = engine.cache.stats().blocksCached;
    expect(cached).toBeGreaterThan(0);
    expect(await engine.cache.clear()).toBe(cached);
    expect(engine.cache.stats().blocksCached).toBe(0);
    const before = engine.cache.stats().hitTokens;
    await engine.generate(`${SYSTEM}Hello`, { maxTokens: 2 });
    expect(engine.cache.stats().hitTokens).toBe(before);
  });

  test('cache calls after close report ERR_CLOSED', async () => {
    await engine.close();
    expect(() => engine.cache.stats()).toThrow(expect.objectContaining({ code: 'ERR_CLOSED' }));
    await expect(engine.cache.clear()).rejects.toMatchObject({ code: 'ERR_CLOSED' });
  });
});

describeWithModels('KV memory accounting', ['synth-tiny-f16.gguf'], (modelPath) => {
  test('each dtype: bytes per token follow the formula and the pool matches the estimate', async () => {
    // K and V of other types: the pool is the estimate, and generation runs.
    for (const kvCache of [{ dtype: 'int4' }, { kType: 'int8', vType: 'int4' }, { kType: 'int4', vType: 'f16' }]) {
      const engine = await Engine.load(modelPath, { device: 'cpu', contextLength: 256, kvCache: { ...kvCache, blocks: 32 }, prefault: false });
      try {
        const info = engine.info();
        const kType = kvCache.kType ?? kvCache.dtype;
        const vType = kvCache.vType ?? kvCache.dtype;
        expect(info).toMatchObject({ kvKType: kType, kvVType: vType, kvDtype: kType === vType ? kType : null });
        expect(engine.cache.stats()).toMatchObject({ kType, vType });
        expect(info.kvPoolBytes).toBe(Engine.estimateKvBytes({ model: engine, contextLength: 512, kType, vType }));
        const result = await engine.generate('Hello there', { temperature: 0, maxTokens: 8 });
        expect(result.tokens).toHaveLength(8);
        if (kType === 'int4') {
          // A rejected guess would stay in its block's int4 channel scales.
          await expect(engine.generate('Hello there', { maxTokens: 4, speculative: 'ngram' })).rejects.toMatchObject({
            code: 'ERR_UNSUPPORTED',
            message: expect.stringContaining('kvCache.kType other than int4'),
          });
        }
      } finally {
        await engine.close();
      }
    }
    const expected = { f32: 4, f16: 2, bf16: 2, int8: 1, fp8: 1 };
    for (const [dtype, bytes] of Object.entries(expected)) {
      const engine = await Engine.load(modelPath, { contextLength: 256, kvCache: { dtype, blocks: 32 }, prefault: false });
      try {
        const info = engine.info();
        const scale = dtype === 'int8' || dtype === 'fp8' ? 4 : 0;
        expect(info.kvBytesPerToken).toBe(2 * info.layers * info.kvHeads * (info.headDim * bytes + scale));
        expect(info.kvPoolBytes).toBe(info.kvBytesPerToken * 16 * 32);
        expect(Engine.estimateKvBytes({ model: engine, contextLength: 256, sequences: 2, dtype })).toBe(info.kvBytesPerToken * 512);
        const result = await engine.generate('Hello there', { temperature: 0, maxTokens: 8 });
        expect(result.tokens).toHaveLength(8);
      } finally {
        await engine.close();
      }
    }
    expect(Engine.estimateKvBytes({ config: { layers: 16, kvHeads: 8, headDim: 64 }, contextLength: 1000, dtype: 'f16' })).toBe(2 * 16 * 8 * 64 * 2 * 1008);
    // int4 on the 1B shape: K 32 bytes a row + 2 per channel per block of 16, V 32 + 2 per 32 values; under 0.3x f16.
    const int4 = Engine.estimateKvBytes({ config: { layers: 16, kvHeads: 8, headDim: 64 }, contextLength: 1008, dtype: 'int4' });
    expect(int4).toBe(16 * 8 * (32 + 8 + 32 + 4) * 1008);
    expect(int4 / (2 * 16 * 8 * 64 * 2 * 1008)).toBeLessThanOrEqual(0.3);
    expect(Engine.estimateKvBytes({ config: { layers: 16, kvHeads: 8, headDim: 64 }, contextLength: 16, kType: 'int8', vType: 'int4' })).toBe(16 * 8 * (68 + 36) * 16);
    expect(() => Engine.estimateKvBytes({ config: { layers: 16 } })).toThrow(TypeError);
    expect(() => Engine.estimateKvBytes({ config: { layers: 1, kvHeads: 1, headDim: 1 }, contextLength: 5, dtype: 'f4' })).toThrow(RangeError);
  });

  test('unused slots stay under one block per running request', async () => {
    const engine = await Engine.load(modelPath, { contextLength: 256, kvCache: { blocks: 64 } });
    try {
      const samples = [];
      const watch = () => samples.push(engine.cache.stats());
      await Promise.all([0, 1, 2].map((i) => engine.generate(`Request ${i} is here`, { maxTokens: 40, ignoreEos: true, onToken: watch })));
      expect(samples.length).toBeGreaterThan(0);
      for (const s of samples) expect(s.unusedSlots).toBeLessThan(3 * s.blockSize);
      expect(samples.some((s) => s.unusedSlots > 0)).toBe(true);
      expect(engine.cache.stats().unusedSlots).toBe(0);
    } finally {
      await engine.close();
    }
  });
});

describeWithModels('pinned prefixes', ['synth-tiny-f16.gguf'], (modelPath) => {
  test('a pinned system prompt survives eviction pressure and clear(), until unpinned', async () => {
    // 24 blocks of 16: the pinned prompt plus one request at a time.
    const engine = await Engine.load(modelPath, { contextLength: 256, kvCache: { blocks: 24 } });
    try {
      const pin = await engine.cache.pin(SYSTEM);
      const systemTokens = engine.tokenize(SYSTEM).length;
      expect(pin.tokens).toBe(Math.floor(systemTokens / 16) * 16);
      expect(engine.cache.stats().blocksPinned).toBe(pin.tokens / 16);
      for (let i = 0; i < 6; i++) await engine.generate(`Unrelated request number ${i} with its own words`, { maxTokens: 150, ignoreEos: true });
      await engine.cache.clear();
      expect(engine.cache.stats().evictions).toBeGreaterThan(0);
      const before = engine.cache.stats().hitTokens;
      await engine.generate(`${SYSTEM}And now a question.`, { maxTokens: 4 });
      expect(engine.cache.stats().hitTokens - before).toBe(pin.tokens);

      expect(await engine.cache.unpin(pin)).toBe(true);
      expect(await engine.cache.unpin(pin)).toBe(false);
      expect(engine.cache.stats().blocksPinned).toBe(0);
      await engine.cache.clear();
      const after = engine.cache.stats().hitTokens;
      await engine.generate(`${SYSTEM}And now a question.`, { maxTokens: 4 });
      expect(engine.cache.stats().hitTokens).toBe(after);
      expect(engine.cache.stats().blocksInUse).toBe(0);
      await expect(engine.cache.unpin('x')).rejects.toThrow(TypeError);
    } finally {
      await engine.close();
    }
  });
});

describeWithModels('saved caches', ['synth-tiny-f16.gguf', 'stories260K.gguf'], (modelPath, otherModel) => {
  const fs = require('node:fs');
  const os = require('node:os');
  const path = require('node:path');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pagedlm-cache-'));

  test('an engine restarted with cache.load() hits on what the previous one computed', async () => {
    const file = path.join(dir, 'warm.pgkv');
    const question = `${SYSTEM}What is paging?`;
    const first = await Engine.load(modelPath, { contextLength: 512 });
    const cold = await first.generate(question, { temperature: 0, maxTokens: 10 });
    expect(await first.cache.save(file)).toBeGreaterThan(0);
    await first.close();

    const second = await Engine.load(modelPath, { contextLength: 512 });
    try {
      expect(await second.cache.load(file)).toBeGreaterThan(0);
      const warm = await second.generate(question, { temperature: 0, maxTokens: 10 });
      expect(warm.tokens).toEqual(cold.tokens);
      expect(second.cache.stats().hitTokens).toBeGreaterThan(0);
    } finally {
      await second.close();
    }
  });

  test('a file from another model or dtype is refused with ERR_CACHE_FILE and changes nothing', async () => {
    const file = path.join(dir, 'f16.pgkv');
    const source = await Engine.load(modelPath, { contextLength: 512 });
    await source.generate(`${SYSTEM}Hi`, { maxTokens: 2 });
    await source.cache.save(file);
    await source.close();

    const other = await Engine.load(otherModel);
    const int8 = await Engine.load(modelPath, { contextLength: 512, kvCache: { dtype: 'int8' } });
    const split = await Engine.load(modelPath, { device: 'cpu', contextLength: 512, kvCache: { kType: 'f16', vType: 'int4' } });
    try {
      await expect(other.cache.load(file)).rejects.toMatchObject({ code: 'ERR_CACHE_FILE', message: expect.stringContaining('different model') });
      await expect(int8.cache.load(file)).rejects.toMatchObject({ code: 'ERR_CACHE_FILE', message: expect.stringContaining('f16') });
      expect(int8.cache.stats().blocksCached).toBe(0);
      await expect(split.cache.load(file)).rejects.toMatchObject({ code: 'ERR_CACHE_FILE', message: expect.stringContaining('K f16, V int4') });
      const truncated = path.join(dir, 'truncated.pgkv');
      fs.writeFileSync(truncated, fs.readFileSync(file).subarray(0, 100));
      await expect(other.cache.load(truncated)).rejects.toMatchObject({ code: 'ERR_CACHE_FILE' });
      await expect(other.cache.load(path.join(dir, 'missing.pgkv'))).rejects.toMatchObject({ code: 'ERR_IO' });
      await expect(other.cache.save(42)).rejects.toThrow(TypeError);
    } finally {
      await other.close();
      await int8.close();
      await split.close();
    }
  });
});

describeWithModels('n completions', ['synth-tiny-f16.gguf'], (modelPath) => {
  test('n sampled completions share the prompt and each matches its own seeded run', async () => {
    const engine = await Engine.load(modelPath, { contextLength: 256, kvCache: { blocks: 96 } });
    try {
      const streamed = [[], [], []];
      const options = { n: 3, seed: 5, temperature: 1, topK: 0, topP: 1, minP: 0, maxTokens: 12, ignoreEos: true };
      const result = await engine.generate('Tell me a story about', { ...options, onToken: (t) => streamed[t.index].push(t.id) });
      expect(result.choices).toHaveLength(3);
      expect(result.choices.map((c) => c.index)).toEqual([0, 1, 2]);
      expect(result.text).toBe(result.choices[0].text);
      expect(result.usage.completionTokens).toBe(36);
      for (const c of result.choices) expect(streamed[c.index]).toEqual(c.tokens);
      expect(new Set(result.choices.map((c) => c.tokens.join(','))).size).toBeGreaterThan(1);
      // Choice 0 is seeded with the request's seed: the same as a single completion.
      const single = await engine.generate('Tell me a story about', { ...options, n: 1, cacheSalt: 'cold' });
      expect(single.tokens).toEqual(result.choices[0].tokens);
      expect(engine.cache.stats().blocksInUse).toBe(0);
      await expect(engine.generate('x', { n: 0 })).rejects.toThrow(RangeError);
    } finally {
      await engine.close();
    }
  });
});
