'use strict';
// The speculative decoding benchmark's copier models (bench/copier-model.js): greedy decoding must continue a
// document the prompt holds, or the benchmark's copy workload measures nothing. The tiny draft shape is built
// exactly as the 1B one, at a size a test can write.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { Engine } = require('../..');
const { writeLlamaModel, decodeBlocks } = require('../support/gguf-writer');
const { COPIER_DRAFT, copierShape, copyCycle, copyTask, randomTokens } = require('../../bench/copier-model');

describe('copier models', () => {
  let dir;
  let engine;
  const shape = copierShape(COPIER_DRAFT);

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pagedlm-copier-'));
    const file = path.join(dir, 'copier.gguf');
    writeLlamaModel(file, shape);
    engine = await Engine.load(file, { threads: 2, contextLength: 512 });
  });

  afterAll(async () => {
    await engine?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test("the output matrix's row of each token is the code of the token it follows", () => {
    const { dim, vocab } = shape;
    const embeddings = decodeBlocks('Q4_K', shape.tensorData['token_embd.weight']());
    const output = decodeBlocks('Q4_K', shape.tensorData['output.weight']());
    const row = (values, r) => Array.from(values.subarray(r * dim, (r + 1) * dim));
    const { next } = copyCycle(vocab);
    for (const token of [3, 500, vocab - 1]) {
      expect(new Set(row(embeddings, token))).toEqual(new Set([-1, 1]));
      expect(row(output, next[token])).toEqual(row(embeddings, token));
    }
    for (const special of [0, 1, 2]) expect(row(output, special).every((v) => v === 0)).toBe(true);
  });

  test('greedy decoding continues the document, not its edits', async () => {
    const task = copyTask(shape.vocab, { length: 96, edits: 3 });
    const r = await engine.generate(task.prompt, { temperature: 0, maxTokens: 64, ignoreEos: true });
    expect(r.tokens).toEqual(task.expected.slice(0, 64));
    expect(task.expected.filter((t) => !task.prompt.includes(t))).toHaveLength(3); // the prompt holds the edited document
  });

  test('after random tokens it follows its cycle, which the prompt does not hold', async () => {
    const prompt = [1, ...randomTokens(shape.vocab, 64)];
    const r = await engine.generate(prompt, { temperature: 0, maxTokens: 16, ignoreEos: true });
    const { next } = copyCycle(shape.vocab);
    const expected = [];
    for (let token = prompt[prompt.length - 1]; expected.length < 16; ) expected.push((token = next[token]));
    expect(r.tokens).toEqual(expected);
    expect(r.tokens.filter((t) => prompt.includes(t))).toEqual([]);
  });
});
