'use strict';
// Engine.inspect plans a model's memory from its metadata; Engine.load's default context is the model's
// own, capped by what fits, and info() says which limit applied.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { Engine } = require('../..');
const { writeLlamaModel } = require('../support/gguf-writer');

const SHAPE = { dim: 64, layers: 2, heads: 4, kvHeads: 2, ffn: 128, vocab: 320, type: 'F16' };
const HEAD_DIM = SHAPE.dim / SHAPE.heads;
let dir;
let longContextModel;

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pagedlm-inspect-'));
  longContextModel = writeLlamaModel(path.join(dir, 'long-context.gguf'), { ...SHAPE, context: 131072, name: 'long-context' });
});

afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

test('inspect reports the shape, the weights by type and the KV bytes per token of every dtype', async () => {
  const plan = await Engine.inspect(longContextModel);
  expect(plan).toMatchObject({ architecture: 'llama', name: 'long-context', files: 1, layers: 2, heads: 4, kvHeads: 2, headDim: HEAD_DIM });
  expect(plan.trainedContextLength).toBe(131072);
  const typeTotal = Object.values(plan.weightBytesByType).reduce((a, b) => a + b, 0);
  expect(typeTotal).toBe(plan.weightBytes);
  expect(Object.keys(plan.weightBytesByType).sort()).toEqual(['F16', 'F32']);
  const perRow = { f32: HEAD_DIM * 4, f16: HEAD_DIM * 2, bf16: HEAD_DIM * 2, int8: HEAD_DIM + 4, fp8: HEAD_DIM + 4 };
  for (const [dtype, row] of Object.entries(perRow)) expect(plan.kvBytesPerToken[dtype]).toBe(2 * SHAPE.layers * SHAPE.kvHeads * row);
  // int4: K rows of HEAD_DIM / 2 bytes and an f16 scale per channel per block of 16; V rows the same and an
  // f16 scale per 32 values (one group here).
  expect(plan.kvBytesPerToken.int4).toBe(SHAPE.layers * SHAPE.kvHeads * (HEAD_DIM / 2 + Math.ceil((2 * HEAD_DIM) / 16) + HEAD_DIM / 2 + 2));
  expect(plan.memorySource).toMatch(/^(MemAvailable|physical memory)$/);
  expect(plan).toMatchObject({ device: 'cpu', gpu: null, deviceWeightBytes: plan.weightBytes });
  expect(plan.kvBudgetBytes).toBe(Math.floor((plan.memoryBytes - plan.weightBytes) / 2));
});

test("device 'cuda' without a usable device is an error that says why; 'auto' plans for the CPU", async () => {
  const error = await Engine.inspect(longContextModel, { device: 'cuda' }).catch((e) => e);
  expect(error).toMatchObject({ code: 'ERR_UNSUPPORTED' });
  expect(error.message).toMatch(/CUDA cannot be planned for: /);
  expect((await Engine.inspect(longContextModel, { device: 'auto' })).device).toBe('cpu');
});

test('the longest context follows the memory, the dtype and the number of sequences', async () => {
  const perToken = 2 * SHAPE.layers * SHAPE.kvHeads * HEAD_DIM * 2;
  const weights = (await Engine.inspect(longContextModel)).weightBytes;
  // Memory for 1,000 blocks of 16 tokens after the weights, of which the pool takes half.
  const memory = weights + 2 * 1000 * 16 * perToken;
  const one = await Engine.inspect(longContextModel, { memory });
  expect(one).toMatchObject({ memorySource: 'option', memoryBytes: memory, maxContextLength: 16000, contextLength: 16000, contextLimit: 'memory' });
  const four = await Engine.inspect(longContextModel, { memory, sequences: 4 });
  expect(four.maxContextLength).toBe(4000);
  const int8 = await Engine.inspect(longContextModel, { memory, kvCache: { dtype: 'int8' } });
  expect(int8.kvDtype).toBe('int8');
  expect(int8.maxContextLength).toBe(Math.floor((1000 * 16 * perToken) / (16 * int8.kvBytesPerToken.int8)) * 16);
  const split = await Engine.inspect(longContextModel, { memory, kvCache: { kType: 'int8', vType: 'int4' } });
  expect(split).toMatchObject({ kvDtype: null, kvKType: 'int8', kvVType: 'int4' });
  expect(split.kvPlannedBytesPerToken).toBe(SHAPE.layers * SHAPE.kvHeads * (HEAD_DIM + 4 + HEAD_DIM / 2 + 2));
  expect(split.maxContextLength).toBe(Math.floor((1000 * 16 * perToken) / (16 * split.kvPlannedBytesPerToken)) * 16);
  const roomy = await Engine.inspect(longContextModel, { memory: weights + 2 * 4 * 131072 * perToken });
  expect(roomy).toMatchObject({ contextLength: 131072, contextLimit: 'model' });
});

test("load serves the model's own context when it fits and says so", async () => {
  const plan = await Engine.inspect(longContextModel);
  const engine = await Engine.load(longContextModel, { threads: 1, prefault: false });
  try {
    const info = engine.info();
    expect(info.trainedContextLength).toBe(131072);
    expect(info.contextLength).toBe(plan.contextLength);
    expect(info.contextLimit).toBe(plan.contextLimit);
    expect(info.kvBlocks * info.kvBlockSize).toBeGreaterThanOrEqual(info.contextLength);
  } finally {
    await engine.close();
  }
});

test('an explicit context or pool sets the limit info() reports', async () => {
  const byOption = await Engine.load(longContextModel, { threads: 1, prefault: false, contextLength: 1000 });
  expect(byOption.info()).toMatchObject({ contextLength: 1000, contextLimit: 'option' });
  await byOption.close();
  const byPool = await Engine.load(longContextModel, { threads: 1, prefault: false, kvCache: { blocks: 64 } });
  expect(byPool.info()).toMatchObject({ contextLength: 1024, contextLimit: 'kvCache', kvBlocks: 64 });
  await byPool.close();
});

test('bad input to inspect is a clear error', async () => {
  await expect(Engine.inspect(42)).rejects.toThrow(TypeError);
  await expect(Engine.inspect(longContextModel, { memory: -1 })).rejects.toThrow(RangeError);
  await expect(Engine.inspect(longContextModel, { sequences: 0 })).rejects.toThrow(RangeError);
  await expect(Engine.inspect(longContextModel, { kvCache: { dtype: 'f8' } })).rejects.toThrow(RangeError);
  await expect(Engine.inspect(longContextModel, 'big')).rejects.toThrow(TypeError);
  await expect(Engine.inspect(longContextModel, { device: 'tpu' })).rejects.toThrow(RangeError);
  await expect(Engine.inspect(path.join(dir, 'missing.gguf'))).rejects.toMatchObject({ code: 'ERR_IO' });
  const truncated = path.join(dir, 'truncated.gguf');
  fs.writeFileSync(truncated, fs.readFileSync(longContextModel).subarray(0, 5000));
  await expect(Engine.inspect(truncated)).rejects.toMatchObject({ code: 'ERR_MODEL_FORMAT' });
});
