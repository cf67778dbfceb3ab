'use strict';
// pagedlm serve: the OpenAI-compatible router and its chat page over one engine.

const { loadEngine } = require('./common');

const LOOPBACK = ['127.0.0.1', 'localhost', '::1'];

async function serve(values, positionals) {
  const engine = await loadEngine(values, positionals);
  const express = require('express');
  const { createRouter } = require('../express');
  const app = express();
  const apiKey = values['api-key'] ?? process.env.PAGEDLM_API_KEY;
  app.use(
    createRouter(engine, {
      ui: true,
      apiKey,
      protectMetrics: values['protect-metrics'],
      maxTokens: values['max-tokens-cap'],
      maxPromptTokens: values['max-prompt-tokens'],
      // The chat page sends the whole conversation each turn: it should keep going, not fail, when it grows long.
      contextOverflow: values['context-overflow'] ?? 'truncate-oldest',
    }),
  );
  const host = values.host ?? '127.0.0.1';
  if (!LOOPBACK.includes(host) && !apiKey) {
    process.stderr.write(`warning: serving on ${host} without --api-key: anyone who can reach this port can use the model\n`);
  }
  const server = app.listen(values.port ?? 8080, host, () => {
    const address = server.address();
    process.stderr.write(`pagedlm serving ${engine.info().name || 'model'} at http://${host}:${address.port}/ (OpenAI API under /v1)\n`);
  });
  const shutdown = () => {
    server.close();
    engine.close().then(() => process.exit(0));
  };
  process.once('SIGINT', shutdown);
  process.once('SIGTERM', shutdown);
}

module.exports = { serve };
