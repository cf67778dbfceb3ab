'use strict';
// Constrained decoding from JavaScript: generate() with jsonSchema / json / grammar on a random-weight model,
// whose free output is noise, so every valid answer is the grammar engine's doing. Each output is checked
// by an independent JSON Schema validator (ajv) over the schema corpus in test/fixtures/schemas, under
// batching, n > 1, prefix-cache hits and preemption; the router's response_format through the openai client.
const fs = require('node:fs');
const path = require('node:path');
// JSON Schema 2020-12, the draft whose prefixItems / items the compiler implements.
const Ajv = require('ajv/dist/2020');
const addFormats = require('ajv-formats');
const { Engine, jsonSchemaToGrammar } = require('../..');
const { startRouter, stopRouter } = require('../support/router');
const { describeWithModels } = require('../support/models');

const corpusDir = path.join(__dirname, '..', 'fixtures', 'schemas');
const corpus = fs.readdirSync(corpusDir).filter((f) => f.endsWith('.json')).sort()
  .map((f) => JSON.parse(fs.readFileSync(path.join(corpusDir, f), 'utf8')));

const ajv = new Ajv({ strict: false, allErrors: true });
addFormats(ajv);

function expectValid(schema, value, text) {
  const validate = ajv.compile(schema);
  const ok = validate(value);
  if (!ok) throw new Error(`output ${text} is invalid against ${JSON.stringify(schema)}: ${ajv.errorsText(validate.errors)}`);
}

// Sampled, so that outputs wander over the whole schema rather than one greedy path.
const SAMPLED = { temperature: 1, topK: 0, topP: 1, minP: 0, maxTokens: 600 };

test('the schema corpus is there and ajv agrees with its own valid and invalid examples', () => {
  expect(corpus.length).toBeGreaterThanOrEqual(12);
  for (const { name, schema, valid, invalid } of corpus) {
    const validate = ajv.compile(schema);
    for (const v of valid) expect([name, validate(v)]).toEqual([name, true]);
    for (const v of invalid) expect([name, validate(v)]).toEqual([name, false]);
  }
});

describeWithModels('constrained decoding in generate()', ['stories260K.gguf'], (modelPath) => {
  let engine;
  beforeAll(async () => {
    engine = await Engine.load(modelPath, { contextLength: 1024 });
  });
  afterAll(() => engine.close());

  test('every schema of the corpus, all at once (batched), n = 2, with a shared prefix: valid JSON, parsed', async () => {
    // Longer than two KV blocks, so that every request after the first reuses the first's blocks.
    const prompt = 'Answer in JSON. Once upon a time there was a little girl who lived in a small house by the sea. '.repeat(2);
    const run = ({ schema }, i) => engine.generate(prompt + i, { ...SAMPLED, seed: 40 + i, n: 2, jsonSchema: schema });
    const first = await run(corpus[0], 0); // the rest, batched together, find its prompt blocks cached
    const results = [first, ...(await Promise.all(corpus.slice(1).map((c, i) => run(c, i + 1))))];
    results.forEach((r, i) => {
      for (const choice of r.choices) {
        expect([corpus[i].name, choice.finishReason]).toEqual([corpus[i].name, 'stop']);
        expectValid(corpus[i].schema, choice.json, choice.text);
        expect(choice.json).toEqual(JSON.parse(choice.text));
      }
      expect(r.json).toEqual(r.choices[0].json);
    });
    expect(engine.cache.stats().prefixHits).toBeGreaterThan(0);
  });

  test('greedy, streamed: the streamed text is the result and it is valid', async () => {
    for (const { schema, name } of corpus.slice(0, 6)) {
      let streamed = '';
      const r = await engine.generate('Tell me about the dog.', { temperature: 0, maxTokens: 600, jsonSchema: schema, onToken: (t) => { streamed += t.text; } });
      expect([name, r.finishReason]).toEqual([name, 'stop']);
      expect(streamed).toBe(r.text);
      expectValid(schema, r.json, r.text);
    }
  });

  test('json: true gives any JSON value; a GBNF grammar is followed and ends where it does', async () => {
    const anyJson = await engine.generate('Once', { ...SAMPLED, seed: 3, json: true });
    expect(anyJson.finishReason).toBe('stop');
    expect(anyJson.json).toEqual(JSON.parse(anyJson.text));
    const grammar = 'root ::= "The answer is " ("yes" | "no" | [0-9]{1,3}) "."';
    for (let seed = 0; seed < 5; seed++) {
      const r = await engine.generate('Once', { ...SAMPLED, seed, grammar });
      expect(r.text).toMatch(/^The answer is (yes|no|[0-9]{1,3})\.$/);
      expect(r.finishReason).toBe('stop');
      expect(r.json).toBeUndefined();
    }
  });

  test('a composed grammar: jsonSchemaToGrammar rules under a prefix inside a bigger grammar', async () => {
    const schema = { type: 'object', properties: { ok: { type: 'boolean' } }, required: ['ok'], additionalProperties: false };
    const rules = jsonSchemaToGrammar(schema, { rulePrefix: 'answer-' });
    const r = await engine.generate('Once', { ...SAMPLED, seed: 9, grammar: `root ::= "<out>" answer-root "</out>"\n${rules}` });
    const match = /^<out>(.*)<\/out>$/s.exec(r.text);
    expect(match).not.toBeNull();
    expectValid(schema, JSON.parse(match[1]), r.text);
  });

  test('bad schemas and grammars are TypeErrors naming where, before anything is submitted', async () => {
    const before = engine.stats();
    await expect(engine.generate('x', { jsonSchema: { type: 'object', properties: { age: { type: 'int' } } } }))
      .rejects.toMatchObject({ name: 'TypeError', code: 'ERR_INVALID_SCHEMA', message: expect.stringMatching(/\/properties\/age\/type/) });
    await expect(engine.generate('x', { grammar: 'root ::= "a"\nb ::= (' }))
      .rejects.toMatchObject({ name: 'TypeError', code: 'ERR_INVALID_GRAMMAR', message: expect.stringMatching(/line 2/) });
    await expect(engine.generate('x', { grammar: 'root ::= valu' })).rejects.toMatchObject({ code: 'ERR_INVALID_GRAMMAR', message: expect.stringMatching(/valu/) });
    await expect(engine.generate('x', { grammar: 'root ::= "a"', json: true })).rejects.toThrow(TypeError);
    await expect(engine.generate('x', { jsonSchema: 5 })).rejects.toThrow(/jsonSchema must be a JSON Schema/);
    await expect(engine.generate('x', { grammar: 7 })).rejects.toThrow(TypeError);
    expect(() => jsonSchemaToGrammar({}, { rulePrefix: 'a b' })).toThrow(TypeError);
    expect(engine.stats().blocksInUse).toBe(before.blocksInUse);
  });

  test('an abort in the middle of a constrained answer frees everything', async () => {
    const controller = new AbortController();
    let tokens = 0;
    const r = await engine.generate('Once', {
      ...SAMPLED, maxTokens: 900, seed: 1, grammar: 'root ::= [a-z ]{600,2000} "."', signal: controller.signal,
      onToken: () => { if (++tokens === 5) controller.abort(); },
    });
    expect(r.finishReason).toBe('abort');
    expect(r.text).toMatch(/^[a-z ]*$/);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(engine.stats().blocksInUse).toBe(0);
  });
});

describeWithModels('constrained decoding under preemption', ['stories260K.gguf'], (modelPath) => {
  test('a pool far smaller than the load: outputs equal their solo runs, all valid', async () => {
    const schemas = corpus.slice(0, 8);
    const options = (i) => ({ temperature: 0.9, topK: 0, topP: 1, minP: 0, maxTokens: 200, seed: 70 + i, jsonSchema: schemas[i].schema });
    const prompt = (i) => `Once upon a time, in a land far away, there lived a ${i} `.repeat(3);
    const roomy = await Engine.load(modelPath, { contextLength: 512 });
    const solo = [];
    for (let i = 0; i < schemas.length; i++) solo.push((await roomy.generate(prompt(i), options(i))).text);
    await roomy.close();
    const tight = await Engine.load(modelPath, { contextLength: 512, kvCache: { blocks: 20, blockSize: 16 }, maxBatchTokens: 64 });
    const results = await Promise.all(schemas.map((_, i) => tight.generate(prompt(i), options(i))));
    results.forEach((r, i) => {
      expect(r.text).toBe(solo[i]);
      expectValid(schemas[i].schema, r.json, r.text);
    });
    expect(tight.stats().preemptions).toBeGreaterThan(0);
    expect(tight.stats().blocksInUse).toBe(0);
    await tight.close();
  });
});

describeWithModels('response_format through the openai client', ['stories260K.gguf'], (modelPath) => {
  let engine;
  let server;
  let client;
  beforeAll(async () => {
    engine = await Engine.load(modelPath, { contextLength: 1024 });
    ({ server, client } = await startRouter(engine, { model: 'tiny', maxTokens: 600 }));
  });
  afterAll(async () => {
    await stopRouter(server);
    await engine.close();
  });

  const messages = [{ role: 'developer', content: 'Reply in JSON.' }, { role: 'user', content: 'Describe a cat.' }];

  test('json_schema (strict), streamed and not: the content is valid against the schema', async () => {
    for (const { schema, name } of corpus.filter((c) => c.schema.type === 'object').slice(0, 4)) {
      const request = { model: 'tiny', messages, max_tokens: 600, temperature: 0.8, seed: 5, response_format: { type: 'json_schema', json_schema: { name: 'answer', strict: true, schema } } };
      const completion = await client.chat.completions.create(request);
      expect([name, completion.choices[0].finish_reason]).toEqual([name, 'stop']);
      const content = completion.choices[0].message.content;
      expectValid(schema, JSON.parse(content), content);
      let streamed = '';
      for await (const chunk of await client.chat.completions.create({ ...request, stream: true })) streamed += chunk.choices[0]?.delta?.content ?? '';
      expect(streamed).toBe(content);
    }
  });

  test('json_object: a JSON object whenever the answer is complete', async () => {
    let complete = 0;
    for (let seed = 0; seed < 4; seed++) {
      const completion = await client.chat.completions.create({ model: 'tiny', messages, max_tokens: 300, temperature: 1, seed, response_format: { type: 'json_object' } });
      const { finish_reason: finish, message } = completion.choices[0];
      expect(message.content.trimStart()).toMatch(/^\{/);
      if (finish !== 'stop') continue; // an open string may outrun max_tokens: the text is then a prefix
      complete++;
      const value = JSON.parse(message.content);
      expect(typeof value === 'object' && value !== null && !Array.isArray(value)).toBe(true);
    }
    expect(complete).toBeGreaterThan(0);
  });
});

