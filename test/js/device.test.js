'use strict';
// Backend selection: 'auto' falls back to the CPU and says why, 'cuda' fails clearly where CUDA cannot run,
// and the addon itself never links CUDA (it loads on machines with no NVIDIA driver or CUDA libraries).
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { Engine } = require('../..');
const { describeWithModels } = require('../support/models');

const addonPath = path.join(__dirname, '..', '..', 'build', 'Release', 'pagedlm.node');

test('the addon links no CUDA library', () => {
  const linked = execFileSync('ldd', [addonPath], { encoding: 'utf8' });
  expect(linked).not.toMatch(/libcuda|libcudart|libcublas|libpagedlm_kernels/);
});

test('the addon loads and runs on the CPU with the CUDA library hidden', () => {
  const script = `
    const { Engine } = require(${JSON.stringify(path.join(__dirname, '..', '..'))});
    Engine.load(process.argv[1], { device: 'auto', threads: 1 }).then(async (e) => {
      const info = e.info();
      const r = await e.generate([1], { temperature: 0, maxTokens: 3 });
      console.log(JSON.stringify({ backend: info.backend, reason: info.backendReason, tokens: r.tokens.length }));
      await e.close();
    });`;
  const model = path.join(__dirname, '..', '..', '..', 'shared', 'models', 'stories260K.gguf');
  if (!fs.existsSync(model)) return;
  const out = execFileSync(process.execPath, ['-e', script, model], {
    encoding: 'utf8',
    env: { ...process.env, PAGEDLM_CUDA_LIBRARY: '/nonexistent/libpagedlm_kernels.so', LD_LIBRARY_PATH: '/nonexistent' },
  });
  const result = JSON.parse(out.trim().split('\n').pop());
  expect(result).toMatchObject({ backend: 'cpu', tokens: 3, reason: expect.stringMatching(/^built without CUDA \(.*nonexistent/) });
});

describeWithModels('device option', ['stories260K.gguf'], (modelPath) => {
  test("'cpu' runs on the CPU because it was asked for", async () => {
    const engine = await Engine.load(modelPath, { device: 'cpu', threads: 1 });
    expect(engine.info()).toMatchObject({ backend: 'cpu', backendReason: 'asked for', gpu: null, gpuWeightBytes: 0 });
    expect(engine.cache.stats()).toMatchObject({ device: 'cpu', deviceBytes: 0 });
    await engine.close();
  });

  test("'auto' says which backend it picked and why; 'cuda' runs there or rejects saying why", async () => {
    const engine = await Engine.load(modelPath, { threads: 1 });
    const info = engine.info();
    await engine.close();
    expect(['cpu', 'cuda']).toContain(info.backend);
    expect(info.backendReason.length).toBeGreaterThan(0);
    if (info.backend === 'cuda') {
      expect(info.gpu).toEqual(expect.any(String));
      const cuda = await Engine.load(modelPath, { device: 'cuda' });
      expect(cuda.cache.stats()).toMatchObject({ device: 'cuda', deviceBytes: expect.any(Number) });
      const [a, b] = await Promise.all([cuda.generate([1, 403], { temperature: 0, maxTokens: 20, ignoreEos: true }),
        Engine.load(modelPath, { device: 'cpu' }).then(async (cpu) => {
          const r = await cpu.generate([1, 403], { temperature: 0, maxTokens: 20, ignoreEos: true });
          await cpu.close();
          return r;
        })]);
      expect(a.tokens).toEqual(b.tokens);
      await cuda.close();
    } else {
      await expect(Engine.load(modelPath, { device: 'cuda' })).rejects.toMatchObject({
        code: 'ERR_UNSUPPORTED',
        message: `the CUDA backend could not start: ${info.backendReason}`,
      });
    }
  });

  test('bad device options are RangeErrors', async () => {
    await expect(Engine.load(modelPath, { device: 'gpu' })).rejects.toThrow(RangeError);
    await expect(Engine.load(modelPath, { gpu: -1 })).rejects.toThrow(RangeError);
    await expect(Engine.load(modelPath, { gpu: 1.5 })).rejects.toThrow(RangeError);
    await expect(Engine.load(modelPath, { device: 1 })).rejects.toThrow(RangeError);
    await expect(Engine.load(modelPath, { kvCache: { gpuMemoryFraction: 0 } })).rejects.toThrow(RangeError);
    await expect(Engine.load(modelPath, { kvCache: { gpuMemoryFraction: 1.5 } })).rejects.toThrow(RangeError);
  });
});
