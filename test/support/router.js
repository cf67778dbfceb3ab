'use strict';
// An Express app serving pagedlm's router on a loopback port, and the official openai client pointed at it.
const express = require('express');
const OpenAI = require('openai');
const { createRouter } = require('../../express');

/** { server, url, client } for createRouter(engine, options), listening on 127.0.0.1. */
async function startRouter(engine, options) {
  const app = express();
  app.use(createRouter(engine, options));
  const server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  const url = `http://127.0.0.1:${server.address().port}`;
  return { server, url, client: new OpenAI({ baseURL: `${url}/v1`, apiKey: 'none', maxRetries: 0 }) };
}

// fetch keeps idle connections open for reuse; closing them lets Jest exit as soon as the tests end.
function stopRouter(server) {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(resolve));
}

module.exports = { startRouter, stopRouter };
