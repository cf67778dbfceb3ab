'use strict';

const { Engine, PagedlmError } = require('../..');
const { describeWithModels } = require('../support/models');

const NEURAL = {
  prompt: 'A neural network',
  ids: [431, 279, 438, 349, 261, 446, 299, 303, 266, 323, 434, 285, 362, 262, 434, 429, 464, 448, 464, 464, 464, 464, 464, 464, 448, 429, 468, 342, 358, 402, 327, 446, 262, 263, 428, 434, 436, 451, 275, 429, 464, 448, 464, 464, 464, 464, 464, 464, 464, 448, 429, 468, 342, 358, 402, 327, 446, 429, 464, 448, 464, 464, 464, 464, 464, 464, 464, 448, 429, 468, 342, 358, 402, 327, 446, 262, 429, 464, 448, 464, 464, 464, 464, 464, 464, 448, 429, 468, 342],
  stdout: 'A neural networks flower, as I settle into at 0.000000. Dimensions unfold, a tapestry of 0.0000000. Dimensions unfold, 0.0000000. Dimensions unfold, a 0.000000. Dim',
};

describeWithModels('generate on aidreams260K', ['aidreams260K.gguf'], (modelPath) => {
  let engine;
  beforeAll(async () => {
    engine = await Engine.load(modelPath, { threads: 2 });
  });
  afterAll(() => engine.close());

  test('greedy output reproduces the reference text, streamed token by token', async () => {
    const streamed = [];
    const result = await engine.generate(NEURAL.prompt, { temperature: 0, maxTokens: NEURAL.ids.length, onToken: (t) => streamed.push(t) });
    expect(result.tokens).toEqual(NEURAL.ids);
    expect(NEURAL.prompt + result.text).toBe(NEURAL.stdout);
    expect(result.finishReason).toBe('length');
    expect(result.usage).toEqual({ promptTokens: 12, completionTokens: NEURAL.ids.length });
    expect(streamed.map((t) => t.id)).toEqual(NEURAL.ids);
    expect(streamed.map((t) => t.text).join('')).toBe(result.text);
    expect(result.timings.ttftMs).toBeGreaterThan(0);
    expect(result.timings.tokensPerSecond).toBeGreaterThan(0);
  });

  test('token ids as the prompt give the same output', async () => {
    const ids = engine.tokenize(NEURAL.prompt);
    expect(ids).toEqual([1, 429, 471, 324, 430, 291, 290, 324, 323, 449, 284, 453]);
    const result = await engine.generate(ids, { temperature: 0, maxTokens: 10 });
    expect(result.tokens).toEqual(NEURAL.ids.slice(0, 10));
    expect(engine.detokenize(ids)).toBe(NEURAL.prompt);
  });

  test('stop strings end the text before them', async () => {
    const result = await engine.generate(NEURAL.prompt, { temperature: 0, maxTokens: 89, stop: ['Dimensions'] });
    expect(result.finishReason).toBe('stop');
    expect(result.text).toBe('s flower, as I settle into at 0.000000. ');
  });

  test('the same seed gives the same sampled output', async () => {
    const options = { temperature: 1, topK: 0, topP: 1, minP: 0, seed: 7, maxTokens: 30 };
    const a = await engine.generate('In the quiet', options);
    const b = await engine.generate('In the quiet', options);
    expect(a.tokens).toEqual(b.tokens);
  });

  test('concurrent requests each get their own answer', async () => {
    const prompts = ['A neural network', 'In the quiet hum of the servers', 'Dimensions', 'A'];
    const alone = [];
    for (const p of prompts) alone.push((await engine.generate(p, { temperature: 0, maxTokens: 20 })).tokens);
    const together = await Promise.all(prompts.map((p) => engine.generate(p, { temperature: 0, maxTokens: 20 })));
    expect(together.map((r) => r.tokens)).toEqual(alone);
    expect(engine.stats().blocksInUse).toBe(0);
  });

  test('info describes the model and the KV cache', () => {
    const info = engine.info();
    expect(info).toMatchObject({ architecture: 'llama', layers: 4, heads: 4, kvHeads: 4, headDim: 16, vocabSize: 512, contextLength: 128, backend: 'cpu' });
    expect(info.kvBytesPerToken).toBe(2 * 4 * 4 * 16 * 2); // f16 KV by default
    expect(info.parameters).toBeGreaterThan(260000);
    // The file carries its own output matrix: a decode step reads one F32 embedding row, not all 512.
    expect(info.tiedOutput).toBe(false);
    expect(info.decodeWeightBytes).toBe(info.weightBytes - 511 * 64 * 4);
    // The packed copy holds the matmul matrices the kernels can pack (not this model's down projection: its 172
    // columns are no whole chunks), each on pages of its own.
    // The portable and NEON tables read rows in place and keep no packed copy.
    if (['portable', 'neon', 'neon-dotprod'].includes(info.cpuKernels)) expect(info.cpuWeightBytes).toBe(0);
    else expect(info.cpuWeightBytes).toBeGreaterThan(5 * 64 * 64 * 4);
    expect(info.cpuWeightBytes).toBeLessThan(info.weightBytes + (7 * 4 + 1) * 4096);
    expect(info.cpuWeightBytes % 4096).toBe(0);
    expect(info.modelHeapBytes).toBe(0); // memory-mapped
  });

  test('wrong argument types throw TypeError, out-of-range values RangeError', async () => {
    await expect(engine.generate(42)).rejects.toThrow(TypeError);
    await expect(engine.generate(null)).rejects.toThrow(TypeError);
    await expect(engine.generate([1, 'x'])).rejects.toThrow(TypeError);
    await expect(engine.generate([1, -3])).rejects.toThrow(RangeError);
    await expect(engine.generate('hi', 'fast')).rejects.toThrow(TypeError);
    await expect(engine.generate('hi', { maxTokens: '5' })).rejects.toThrow(TypeError);
    await expect(engine.generate('hi', { maxTokens: 0 })).rejects.toThrow(RangeError);
    await expect(engine.generate('hi', { maxTokens: 1.5 })).rejects.toThrow(RangeError);
    await expect(engine.generate('hi', { temperature: -1 })).rejects.toThrow(RangeError);
    await expect(engine.generate('hi', { topP: 0 })).rejects.toThrow(RangeError);
    await expect(engine.generate('hi', { stop: [1] })).rejects.toThrow(TypeError);
    await expect(engine.generate('hi', { onToken: 'print' })).rejects.toThrow(TypeError);
    await expect(engine.generate('hi', { signal: {} })).rejects.toThrow(TypeError);
    expect(() => engine.tokenize(5)).toThrow(TypeError);
    expect(() => engine.detokenize('abc')).toThrow(TypeError);
    expect(() => engine.detokenize([100000])).toThrow(RangeError);
    await expect(Engine.load(7)).rejects.toThrow(TypeError);
    await expect(Engine.load(modelPath, { threads: 0 })).rejects.toThrow(RangeError);
    await expect(Engine.load(modelPath, { kvCache: { dtype: 'f8' } })).rejects.toThrow(RangeError);
    await expect(Engine.load(modelPath, { kvCache: 'big' })).rejects.toThrow(TypeError);
    expect(() => new Engine()).toThrow(TypeError);
  });

  test('a prompt longer than the context is rejected with ERR_CONTEXT_OVERFLOW', async () => {
    const long = new Array(200).fill(300);
    await expect(engine.generate(long)).rejects.toMatchObject({ code: 'ERR_CONTEXT_OVERFLOW' });
    await expect(engine.generate(long)).rejects.toBeInstanceOf(PagedlmError);
  });

  test('token ids outside the vocabulary are rejected', async () => {
    await expect(engine.generate([1, 5000])).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
  });

  test('a throwing onToken rejects its request and the engine keeps serving', async () => {
    const boom = new Error('callback failed');
    await expect(engine.generate('A', { maxTokens: 50, onToken: () => { throw boom; } })).rejects.toBe(boom);
    const after = await engine.generate(NEURAL.prompt, { temperature: 0, maxTokens: 5 });
    expect(after.tokens).toEqual(NEURAL.ids.slice(0, 5));
    await new Promise((r) => setTimeout(r, 50));
    expect(engine.stats().blocksInUse).toBe(0);
  });
});

describeWithModels('load', ['aidreams260K.gguf'], (modelPath) => {
  test('onProgress reports rising fractions up to 1', async () => {
    const seen = [];
    const engine = await Engine.load(modelPath, { onProgress: (f) => seen.push(f) });
    await engine.close();
    expect(seen.length).toBeGreaterThan(1);
    expect(seen[seen.length - 1]).toBe(1);
    for (let i = 1; i < seen.length; i++) expect(seen[i]).toBeGreaterThanOrEqual(seen[i - 1]);
  });

  test('a throwing onProgress fails the load with its error', async () => {
    const boom = new Error('progress failed');
    await expect(Engine.load(modelPath, { onProgress: () => { throw boom; } })).rejects.toBe(boom);
  });
});

describeWithModels('pool limits', ['aidreams260K.gguf'], (modelPath) => {
  test('a request larger than the whole pool is rejected with ERR_POOL_TOO_SMALL', async () => {
    const engine = await Engine.load(modelPath, { contextLength: 512, kvCache: { blocks: 2, blockSize: 16 } });
    try {
      await expect(engine.generate('A neural network', { maxTokens: 100 })).rejects.toMatchObject({ code: 'ERR_POOL_TOO_SMALL' });
      const small = await engine.generate('A neural network', { temperature: 0, maxTokens: 10 });
      expect(small.tokens).toEqual(NEURAL.ids.slice(0, 10));
    } finally {
      await engine.close();
    }
  });

  test('a pool larger than the machine is ERR_OUT_OF_MEMORY, not a crash', async () => {
    await expect(Engine.load(modelPath, { kvCache: { blocks: 2 ** 31 - 1 } })).rejects.toMatchObject({ code: 'ERR_OUT_OF_MEMORY' });
  });

  test('requests wait for blocks when the pool is busy, then all complete', async () => {
    const engine = await Engine.load(modelPath, { kvCache: { blocks: 4, blockSize: 16 } });
    try {
      const runs = await Promise.all([1, 2, 3, 4].map(() => engine.generate('A neural network', { temperature: 0, maxTokens: 30 })));
      for (const r of runs) expect(r.tokens).toEqual(NEURAL.ids.slice(0, 30));
      expect(engine.stats()).toMatchObject({ blocksTotal: 4, blocksInUse: 0 });
    } finally {
      await engine.close();
    }
  });
});

describe('mixed quantized types', () => {
  const fs = require('node:fs');
  const os = require('node:os');
  const path = require('node:path');
  const { writeLlamaModel } = require('../support/gguf-writer');
  const shape = { dim: 256, layers: 2, heads: 4, kvHeads: 2, ffn: 256, vocab: 400, context: 256 };

  test('a Q4_K_M-like file (Q6_K output, V and down in every other layer) loads, reads its Q6_K bytes per step, and generates', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pagedlm-q4km-'));
    const info = {};
    try {
      for (const type of ['Q4_K', 'Q4_K_M']) {
        const file = path.join(dir, `${type}.gguf`);
        writeLlamaModel(file, { ...shape, type });
        const engine = await Engine.load(file, { threads: 2 });
        try {
          info[type] = engine.info();
          const result = await engine.generate([1, 300, 301, 302], { temperature: 0, maxTokens: 6, ignoreEos: true });
          expect(result.tokens).toHaveLength(6);
          expect((await engine.generate([1, 300, 301, 302], { temperature: 0, maxTokens: 6, ignoreEos: true })).tokens).toEqual(result.tokens);
        } finally {
          await engine.close();
        }
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
    // Q6_K takes 210 bytes per 256 values against Q4_K's 144, on V (256 x 128) and down (256 x 256) of
    // layer 0 and on the output (400 x 256).
    const q6kElements = 256 * 128 + 256 * 256 + 400 * 256;
    expect(info.Q4_K_M.decodeWeightBytes - info.Q4_K.decodeWeightBytes).toBe((q6kElements / 256) * (210 - 144));
    expect(info.Q4_K_M.tensorType).toBe('Q4_K');
  });
});
