#!/usr/bin/env node
'use strict';
// A chat backend in a dozen lines: an Express app serving the OpenAI-compatible API and a streaming
// chat page from one pagedlm Engine.
//   node examples/express-chat/server.js [model.gguf]   then open http://127.0.0.1:8080/
const path = require('node:path');
const express = require('express');
const { Engine } = require('../..');
const { createRouter } = require('../../express');

const model = process.argv[2] || path.join(__dirname, '..', '..', '..', 'shared', 'models', 'synth-tiny-f16.gguf');
const port = Number(process.env.PORT) || 8080;

(async () => {
  const engine = await Engine.load(model, { kvCache: { memory: 512 * 2 ** 20 } });
  const app = express();
  app.use(createRouter(engine, { ui: true }));
  app.listen(port, '127.0.0.1', () => console.log(`chat at http://127.0.0.1:${port}/`));
})();
