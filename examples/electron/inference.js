'use strict';
// The inference side of the app: it owns the Engine and answers the main process's messages. worker.js runs
// it in Electron's utility process over `process.parentPort`; it takes any port-like object (on('message')
// with { data } events, postMessage) so that it also runs, and is tested, in plain Node.
//
// In (from the main process)                   Out (to it)
//   { type: 'load', modelPath, cacheFile,        { type: 'progress', fraction }, then { type: 'ready', model,
//     contextLength? }                           contextLength, cachedBlocks } or { type: 'load-failed', message, code }
//   { type: 'chat', id, messages, maxTokens }    { type: 'token', id, text }..., then { type: 'done', id, text,
//                                                finishReason, truncatedMessages, tokensPerSecond } or
//                                                { type: 'failed', id, message, code }
//   { type: 'abort', id }                        the chat ends with { type: 'done', finishReason: 'abort' }
//   { type: 'quit' }                             { type: 'closed', savedBlocks }: the cache is saved, the engine closed
//
// Every failure becomes a message: nothing thrown here can take the process down or leave a chat unanswered.

const DEFAULT_MAX_TOKENS = 512;

class InferenceError extends Error {
  constructor(message, code) {
    super(message);
    this.code = code;
  }
}

function describeFailure(error) {
  return { message: error?.message ?? String(error), code: typeof error?.code === 'string' ? error.code : 'ERR_INFERENCE' };
}

/** Serves the protocol above on `port` with pagedlm's `Engine`; `onClosed` runs after the reply to 'quit'. */
function serveInference(port, { Engine, onClosed = () => {} }) {
  let engine = null;
  let loading = null;
  let closed = false;
  let cacheFile = null; // where the prefix cache is loaded from and saved to
  const running = new Map(); // chat id -> AbortController
  const post = (message) => port.postMessage(message);

  async function load({ modelPath, cacheFile: file, contextLength }) {
    if (engine || loading) throw new InferenceError('a model is loaded already', 'ERR_ALREADY_LOADED');
    cacheFile = file ?? null;
    loading = Engine.load(modelPath, { contextLength, onProgress: (fraction) => post({ type: 'progress', fraction }) });
    try {
      engine = await loading;
    } catch (error) {
      loading = null;
      post({ type: 'load-failed', ...describeFailure(error) });
      return;
    }
    // The prefix cache of the last session: missing on a first run, refused when saved from another model.
    const cachedBlocks = cacheFile ? await engine.cache.load(cacheFile).catch(() => 0) : 0;
    const info = engine.info();
    post({ type: 'ready', model: info.name, contextLength: info.contextLength, cachedBlocks });
  }

  async function chat({ id, messages, maxTokens = DEFAULT_MAX_TOKENS }) {
    if (closed) throw new InferenceError('the app is quitting', 'ERR_CLOSED');
    if (!engine) throw new InferenceError('the model is not loaded yet', 'ERR_NOT_LOADED');
    if (running.has(id)) throw new InferenceError(`chat ${id} is already running`, 'ERR_DUPLICATE_ID');
    const controller = new AbortController();
    running.set(id, controller);
    try {
      const result = await engine.chat(messages, {
        maxTokens,
        // The window keeps the whole conversation; the oldest turns leave the prompt once it outgrows the context.
        contextOverflow: 'truncate-oldest',
        signal: controller.signal,
        onToken: ({ text }) => post({ type: 'token', id, text }),
      });
      const { text, finishReason, truncatedMessages } = result;
      post({ type: 'done', id, text, finishReason, truncatedMessages, tokensPerSecond: result.timings.tokensPerSecond });
    } finally {
      running.delete(id);
    }
  }

  function abort({ id }) {
    running.get(id)?.abort();
  }

  async function quit() {
    closed = true;
    for (const controller of running.values()) controller.abort();
    await loading?.catch(() => {});
    let savedBlocks = 0;
    if (engine && cacheFile) savedBlocks = await engine.cache.save(cacheFile).catch(() => 0);
    await engine?.close();
    post({ type: 'closed', savedBlocks });
    onClosed();
  }

  const handlers = { load, chat, abort, quit };
  port.on('message', (event) => {
    const message = event?.data;
    const handler = handlers[message?.type];
    const id = message?.id ?? null;
    if (!handler) {
      post({ type: 'failed', id, message: `unknown message type ${JSON.stringify(message?.type)}`, code: 'ERR_UNKNOWN_MESSAGE' });
      return;
    }
    Promise.resolve()
      .then(() => handler(message))
      .catch((error) => post({ type: message.type === 'load' ? 'load-failed' : 'failed', id, ...describeFailure(error) }));
  });
}

module.exports = { serveInference, DEFAULT_MAX_TOKENS };
