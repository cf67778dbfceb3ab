'use strict';
// deepseek2 (multi-head latent attention) through the public API: the KV pool and every report of it count
// one latent row (kv_lora_rank + RoPE dims) per token and layer, no V; a mixture-of-experts file is refused.
// Parity with llama.cpp is in llama-cpp-parity.test.js; the forward pass in test/native/latent_attention_test.cpp.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { Engine } = require('../..');
const { writeModel } = require('../support/gguf-writer');

const MLA = { kvLoraRank: 64, qLoraRank: 0, ropeDim: 16, qkNopeDim: 32, vHeadDim: 32 };
const SHAPE = { architecture: 'deepseek2', dim: 128, layers: 3, heads: 4, kvHeads: 1, ffn: 256, vocab: 300, context: 512, type: 'F32', mla: MLA };

describe('deepseek2 (multi-head latent attention)', () => {
  let dir;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pagedlm-mla-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('KV bytes per token are layers x (kv_lora_rank + rope dims) x bytes in inspect, info and estimateKvBytes', async () => {
    const file = writeModel(path.join(dir, 'mla.gguf'), SHAPE);
    const rowWidth = MLA.kvLoraRank + MLA.ropeDim;
    const inspection = await Engine.inspect(file);
    expect(inspection.architecture).toBe('deepseek2');
    expect(inspection.latentAttention).toBe(true);
    expect(inspection.kvBytesPerToken.f16).toBe(SHAPE.layers * rowWidth * 2);
    expect(inspection.kvBytesPerToken.int8).toBe(SHAPE.layers * (rowWidth + 4));
    const engine = await Engine.load(file, { contextLength: 64, kvCache: { blocks: 8 }, device: 'cpu' });
    try {
      const info = engine.info();
      expect(info.latentAttention).toBe(true);
      expect(info.kvBytesPerToken).toBe(SHAPE.layers * rowWidth * 2);
      expect(info.kvPoolBytes).toBe(8 * 16 * SHAPE.layers * rowWidth * 2);
      expect(Engine.estimateKvBytes({ model: engine, contextLength: 64 })).toBe(64 * SHAPE.layers * rowWidth * 2);
      const { tokens } = await engine.generate([1, 50, 60, 70], { maxTokens: 4, temperature: 0, ignoreEos: true });
      expect(tokens).toHaveLength(4);
    } finally {
      await engine.close();
    }
    expect(Engine.estimateKvBytes({ config: { layers: 3, kvHeads: 1, headDim: rowWidth, latentAttention: true }, contextLength: 16 })).toBe(16 * 3 * rowWidth * 2);
    expect(() => Engine.estimateKvBytes({ config: { layers: 3, kvHeads: 1, headDim: rowWidth, latentAttention: 1 }, contextLength: 16 })).toThrow(
      'config.latentAttention must be a boolean',
    );
  });

  // One row holds K and V: kType alone sets both, a vType of its own is refused by load, inspect and estimate.
  test('V takes K\'s type; a different vType is an error', async () => {
    const file = writeModel(path.join(dir, 'mla-types.gguf'), SHAPE);
    const rowWidth = MLA.kvLoraRank + MLA.ropeDim;
    const plan = await Engine.inspect(file, { kvCache: { kType: 'int8' } });
    expect([plan.kvKType, plan.kvVType, plan.kvDtype]).toEqual(['int8', 'int8', 'int8']);
    expect(plan.kvPlannedBytesPerToken).toBe(SHAPE.layers * (rowWidth + 4));
    const engine = await Engine.load(file, { contextLength: 64, kvCache: { blocks: 8, kType: 'int8' }, device: 'cpu' });
    try {
      expect(engine.info().kvDtype).toBe('int8');
    } finally {
      await engine.close();
    }
    const message = /keeps V inside the K row: kvCache.vType \('int4'\) must be kType's \('int8'\)/;
    await expect(Engine.load(file, { kvCache: { kType: 'int8', vType: 'int4' }, device: 'cpu' })).rejects.toThrow(message);
    await expect(Engine.inspect(file, { kvCache: { kType: 'int8', vType: 'int4' } })).rejects.toThrow(message);
    const config = { layers: 3, kvHeads: 1, headDim: rowWidth, latentAttention: true };
    expect(() => Engine.estimateKvBytes({ config, contextLength: 16, kType: 'int8', vType: 'int4' })).toThrow("vType ('int4') must be kType's ('int8')");
  });

  // Prefix hits and saved caches move whole blocks of the K-only pool (Backend::export_block / copy_block).
  test('prefix hits and a saved cache give the tokens of a cold run', async () => {
    const file = writeModel(path.join(dir, 'mla-cache.gguf'), { ...SHAPE, mla: { ...MLA, qLoraRank: 48 } });
    const prompt = Array.from({ length: 40 }, (_, i) => 3 + ((i * 37) % 290));
    const options = { maxTokens: 8, temperature: 0, ignoreEos: true };
    const load = () => Engine.load(file, { contextLength: 128, kvCache: { blocks: 32 }, device: 'cpu' });
    const first = await load();
    let cold;
    const saved = path.join(dir, 'mla.cache');
    try {
      cold = (await first.generate(prompt, options)).tokens;
      const warm = await first.generate(prompt, options);
      expect(warm.tokens).toEqual(cold);
      expect(first.cache.stats().hitTokens).toBeGreaterThanOrEqual(32);
      expect(await first.cache.save(saved)).toBeGreaterThan(0);
    } finally {
      await first.close();
    }
    const second = await load();
    try {
      expect(await second.cache.load(saved)).toBeGreaterThan(0);
      expect((await second.generate(prompt, options)).tokens).toEqual(cold);
      expect(second.cache.stats().hitTokens).toBeGreaterThanOrEqual(32);
    } finally {
      await second.close();
    }
  });

  test('a file with mixture-of-experts layers is refused, saying why', async () => {
    const file = writeModel(path.join(dir, 'moe.gguf'), { ...SHAPE, mla: { ...MLA, denseLayers: 1 } });
    await expect(Engine.load(file, { device: 'cpu' })).rejects.toMatchObject({
      code: 'ERR_UNSUPPORTED',
      message: expect.stringContaining('layers 1 to 2 are mixture-of-experts (leading_dense_block_count 1 of 3 layers)'),
    });
  });
});
