#!/usr/bin/env node
'use strict';
// Streams a completion to stdout and shows the event loop staying free while the engine works.
//   node examples/stream.js [model.gguf] [prompt]
const path = require('node:path');
const { Engine } = require('..');

const model = process.argv[2] || path.join(__dirname, '..', '..', 'shared', 'models', 'aidreams260K.gguf');
const prompt = process.argv[3] || 'In the quiet hum of the servers';

(async () => {
  const engine = await Engine.load(model, { onProgress: (f) => process.stderr.write(`\rloading ${Math.round(f * 100)}%`) });
  process.stderr.write('\n');
  let ticks = 0;
  const heartbeat = setInterval(() => ticks++, 10);
  const controller = new AbortController();
  process.once('SIGINT', () => controller.abort());
  const result = await engine.generate(prompt, {
    maxTokens: 200,
    temperature: 0.8,
    seed: 42,
    signal: controller.signal,
    onToken: ({ text }) => process.stdout.write(text),
  });
  clearInterval(heartbeat);
  console.log(`\n\n${result.usage.completionTokens} tokens (${result.finishReason}), ` +
    `${result.timings.tokensPerSecond.toFixed(1)} tokens/s; the event loop ticked ${ticks} times meanwhile`);
  await engine.close();
})();
