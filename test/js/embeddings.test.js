'use strict';
// Embeddings: engine.embed() on a shared model (batched inputs, options, bad input, abort, no leaked blocks),
// POST /v1/embeddings through the official openai client (float and base64), and pagedlm's vectors against
// llama.cpp's (test/fixtures/llama-cpp/embeddings, written by test/reference/llama-cpp-embeddings.mjs).
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { Engine } = require('../..');
const OpenAI = require('openai');
const { startRouter, stopRouter } = require('../support/router');
const { describeWithModels, sharedModel } = require('../support/models');
const { writeModel } = require('../support/gguf-writer');

const norm = (v) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));
function cosine(a, b) {
  let dot = 0;
  for (let i = 0; i < a.length; i++) dot += a[i] * b[i];
  return dot / (norm(a) * norm(b));
}
// Largest |a - b| over the largest |b|.
function relativeMaxDiff(a, b) {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < b.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return diff / scale;
}

describeWithModels('engine.embed()', ['aidreams260K.gguf'], (modelPath) => {
  let engine;
  beforeAll(async () => {
    engine = await Engine.load(modelPath, { threads: 2, maxBatchTokens: 16 });
  });
  afterAll(() => engine.close());

  const texts = ['A neural network', 'In the quiet hum of the servers', 'Once upon a time there was a model that dreamt of vectors'];

  test('one vector per input, unit length, the same whether batched or alone', async () => {
    const batch = await engine.embed(texts);
    const { embeddingLength } = engine.info();
    expect(batch.embeddings).toHaveLength(3);
    expect(batch.model).toBe(engine.info().name);
    expect(batch.pooling).toBe('mean');
    expect(engine.info().embeddingPooling).toBe('mean');
    expect(batch.promptTokens).toBe(texts.reduce((sum, t) => sum + engine.tokenize(t).length, 0));
    for (const [i, text] of texts.entries()) {
      const v = batch.embeddings[i];
      // The addon's Float32Array comes from Node's realm, not Jest's sandbox: check its tag.
      expect(Object.prototype.toString.call(v)).toBe('[object Float32Array]');
      expect(v).toHaveLength(embeddingLength);
      expect(norm(v)).toBeCloseTo(1, 5);
      const alone = await engine.embed(text);
      expect(Array.from(alone.embeddings[0])).toEqual(Array.from(v));
    }
    expect(cosine(batch.embeddings[0], batch.embeddings[1])).toBeLessThan(0.9999);
  });

  test('token ids are used as given; normalize: false keeps the raw pooled vector; pooling overrides the model', async () => {
    const ids = engine.tokenize(texts[0]);
    const fromIds = await engine.embed(ids);
    const fromText = await engine.embed(texts[0]);
    expect(fromIds.embeddings[0]).toEqual(fromText.embeddings[0]);
    const raw = (await engine.embed([Int32Array.from(ids)], { normalize: false })).embeddings[0];
    expect(norm(raw)).not.toBeCloseTo(1, 2);
    const scaled = Array.from(raw, (x) => x / norm(raw));
    scaled.forEach((x, i) => expect(x).toBeCloseTo(fromText.embeddings[0][i], 5));
    const last = await engine.embed(ids, { pooling: 'last' });
    expect(last.pooling).toBe('last');
    expect(cosine(last.embeddings[0], fromText.embeddings[0])).toBeLessThan(0.9999);
  });

  test('an empty array resolves to no vectors', async () => {
    await expect(engine.embed([])).resolves.toEqual({ embeddings: [], promptTokens: 0, model: engine.info().name, pooling: 'mean' });
  });

  test('bad input is a TypeError or RangeError that says what is wrong', async () => {
    await expect(engine.embed(42)).rejects.toThrow(new TypeError('input must be a string, an array of token ids, or an array of those, got number'));
    await expect(engine.embed(['ok', null])).rejects.toThrow(new TypeError('input[1] must be a string or an array of token ids, got null'));
    await expect(engine.embed([[1, 2.5]])).rejects.toThrow(TypeError);
    await expect(engine.embed(['ok'], { normalise: false })).rejects.toThrow(/unknown option 'normalise' in embed\(\) options: did you mean 'normalize'\?/);
    await expect(engine.embed('ok', { normalize: 'yes' })).rejects.toThrow(TypeError);
    await expect(engine.embed('ok', { pooling: 'rank' })).rejects.toThrow(/pooling must be one of mean, cls, last/);
    const { contextLength } = engine.info();
    await expect(engine.embed(['ok', 'word '.repeat(contextLength)])).rejects.toThrow(
      new RangeError(`input[1] has ${engine.tokenize('word '.repeat(contextLength)).length} tokens but the context holds ${contextLength}: shorten it or load with a larger contextLength`),
    );
    expect(engine.cache.stats()).toMatchObject({ blocksInUse: 0 });
  });

  test('aborting rejects with the signal\'s reason and frees every block', async () => {
    const already = new AbortController();
    already.abort(new Error('not wanted'));
    await expect(engine.embed(texts, { signal: already.signal })).rejects.toThrow('not wanted');
    const controller = new AbortController();
    const long = Array.from({ length: 8 }, (_, i) => `${texts[2]} ${i}`.repeat(3));
    const pending = engine.embed(long, { signal: controller.signal });
    controller.abort();
    await expect(pending).rejects.toMatchObject({ name: 'AbortError' });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(engine.stats()).toMatchObject({ running: 0, waiting: 0 });
    expect(engine.cache.stats()).toMatchObject({ blocksInUse: 0 });
  });

  test('embeddings run beside a generation without changing it', async () => {
    const options = { maxTokens: 40, temperature: 0, ignoreEos: true };
    const solo = await engine.generate('Once upon a time', options);
    const [together, vectors] = await Promise.all([engine.generate('Once upon a time', options), engine.embed(texts)]);
    expect(together.tokens).toEqual(solo.tokens);
    expect(vectors.embeddings).toEqual((await engine.embed(texts)).embeddings);
    expect(engine.cache.stats()).toMatchObject({ blocksInUse: 0 });
  });
});

describeWithModels('POST /v1/embeddings with the openai client', ['aidreams260K.gguf'], (modelPath) => {
  let engine;
  let server;
  let client;
  beforeAll(async () => {
    engine = await Engine.load(modelPath, { threads: 2 });
    ({ server, client } = await startRouter(engine, { model: 'tiny' }));
  });
  afterAll(async () => {
    await stopRouter(server);
    await engine.close();
  });

  const input = ['A neural network', 'In the quiet hum of the servers'];

  test('float: the engine\'s vectors in OpenAI\'s shape, with usage', async () => {
    const response = await client.embeddings.create({ model: 'tiny', input, encoding_format: 'float', user: 'u1' });
    const expected = await engine.embed(input);
    expect(response.object).toBe('list');
    expect(response.model).toBe('tiny');
    expect(response.usage).toEqual({ prompt_tokens: expected.promptTokens, total_tokens: expected.promptTokens });
    expect(response.data.map((d) => [d.object, d.index])).toEqual([['embedding', 0], ['embedding', 1]]);
    response.data.forEach((d, i) => expect(d.embedding).toEqual(Array.from(expected.embeddings[i])));
  });

  test('base64: little-endian float32 bytes, and what the client decodes by default', async () => {
    const expected = (await engine.embed(input[0])).embeddings[0];
    const raw = await client.embeddings.create({ model: 'tiny', input: input[0], encoding_format: 'base64' });
    const bytes = Buffer.from(raw.data[0].embedding, 'base64');
    expect(Array.from(new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4))).toEqual(Array.from(expected));
    // Without encoding_format the client asks for base64 and decodes it itself.
    const decoded = await client.embeddings.create({ model: 'tiny', input: input[0] });
    expect(decoded.data[0].embedding).toEqual(Array.from(expected));
  });

  test('token ids, alone or in a batch', async () => {
    const ids = engine.tokenize(input[0]);
    const expected = Array.from((await engine.embed(ids)).embeddings[0]);
    const one = await client.embeddings.create({ model: 'tiny', input: ids, encoding_format: 'float' });
    const batch = await client.embeddings.create({ model: 'tiny', input: [ids, ids], encoding_format: 'float' });
    expect(one.data[0].embedding).toEqual(expected);
    expect(batch.data.map((d) => d.embedding)).toEqual([expected, expected]);
    expect(one.usage.prompt_tokens).toBe(ids.length);
  });

  test('unknown fields, a dimensions the model lacks and bad input are 400s naming the field', async () => {
    const cases = [
      [{ input: 'x', model: 'tiny', truncate: true }, 'truncate', /unsupported field 'truncate' in \/v1\/embeddings/],
      [{ input: 'x', model: 'tiny', dimensions: 32 }, 'dimensions', /dimensions must be this model's embedding length, 64/],
      [{ input: 'x', model: 'tiny', encoding_format: 'int8' }, 'encoding_format', /encoding_format must be 'float' or 'base64'/],
      [{ input: [], model: 'tiny' }, 'input', /input must be/],
      [{ input: [''], model: 'tiny' }, 'input', /input\[0\] is empty/],
      [{ input: [[1, 99999]], model: 'tiny' }, 'input', /input\[0\]\[1\] is 99999, not a token id/],
      [{ input: 'word '.repeat(200), model: 'tiny' }, 'input', /the prompt has \d+ tokens; this server accepts at most 128/],
    ];
    for (const [body, param, message] of cases) {
      const error = await client.embeddings.create(body).catch((e) => e);
      expect(error).toBeInstanceOf(OpenAI.BadRequestError);
      expect(error.param).toBe(param);
      expect(error.message).toMatch(message);
    }
    const same = await client.embeddings.create({ input: 'x', model: 'tiny', dimensions: 64, encoding_format: 'float' });
    expect(same.data[0].embedding).toHaveLength(64);
  });

  test('/metrics counts embeddings requests under their own endpoint', async () => {
    const text = await (await fetch(`http://127.0.0.1:${server.address().port}/metrics`)).text();
    const count = (outcome) => Number(new RegExp(`pagedlm_requests_total\\{endpoint="embedding",outcome="${outcome}"\\} (\\d+)`).exec(text)?.[1] ?? 0);
    expect(count('stop')).toBeGreaterThanOrEqual(6);
    expect(count('error')).toBeGreaterThanOrEqual(7);
  });
});

// llama.cpp's raw vectors (it does not normalize them) against pagedlm's with normalize: false.
const FIXTURES = path.join(__dirname, '..', 'fixtures', 'llama-cpp', 'embeddings');
const fixtures = fs
  .readdirSync(FIXTURES)
  .filter((f) => f.endsWith('.json'))
  .sort()
  .map((f) => JSON.parse(fs.readFileSync(path.join(FIXTURES, f), 'utf8')));

describe('embeddings against llama.cpp', () => {
  let dir;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pagedlm-embeddings-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test.each(fixtures.map((f) => [f.case, f]))('%s', async (name, fixture) => {
    let file = fixture.shared && sharedModel(fixture.shared);
    if (fixture.shared && !file) return; // the shared models are absent: nothing to compare
    if (!file) {
      file = path.join(dir, `${name}.gguf`);
      writeModel(file, fixture.shape);
    }
    expect(crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex')).toBe(fixture.modelSha256);
    // F16 KV as llama.cpp's context keeps it.
    const engine = await Engine.load(file, { device: 'cpu', threads: 2, contextLength: fixture.contextSize, kvCache: { dtype: 'f16' }, prefault: false });
    try {
      for (const input of fixture.inputs) {
        if (input.text !== undefined) expect(engine.tokenize(input.text)).toEqual(input.tokens);
      }
      const { embeddings } = await engine.embed(fixture.inputs.map((i) => i.tokens), { normalize: false, pooling: fixture.pooling });
      fixture.inputs.forEach((input, i) => {
        expect(cosine(embeddings[i], input.embedding)).toBeGreaterThan(0.99999);
        expect(relativeMaxDiff(embeddings[i], input.embedding)).toBeLessThan(5e-3);
      });
    } finally {
      await engine.close();
    }
  });
});
