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
