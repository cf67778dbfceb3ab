'use strict';
// The Electron example without Electron: its inference process (inference.js) driven through a fake
// parentPort (messages structured-cloned as Electron's are), and the main process's relay (relay.js) over
// worker.js in a child process whose parentPort is a shim over Node's IPC channel.
const { EventEmitter } = require('node:events');
const { fork } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { Engine } = require('../..');
const { serveInference } = require('../../examples/electron/inference');
const { createRelay } = require('../../examples/electron/relay');
const { describeWithModels } = require('../support/models');

const ROOT = path.join(__dirname, '..', '..');

// A stand-in for Electron's parentPort: the main side sends with send(), the worker side posts with postMessage().
class FakePort extends EventEmitter {
  posted = [];

  postMessage(message) {
    const copy = structuredClone(message); // what Electron's postMessage can carry, nothing else
    this.posted.push(copy);
    this.emit('posted', copy);
  }

  send(data) {
    this.emit('message', { data: structuredClone(data), ports: [] });
  }

  /** The first posted message (from `since` on) that matches `test`, waiting for it. */
  next(test, since = 0) {
    const found = this.posted.slice(since).find(test);
    if (found) return Promise.resolve(found);
    return new Promise((resolve) => {
      const listener = (message) => {
        if (!test(message)) return;
        this.off('posted', listener);
        resolve(message);
      };
      this.on('posted', listener);
    });
  }
}

const ofChat = (id, type) => (m) => m.id === id && m.type === type;
const ended = (id) => (m) => m.id === id && (m.type === 'done' || m.type === 'failed');

describeWithModels('the Electron example: inference.js over a port', ['synth-tiny-f16.gguf'], (modelPath) => {
  let dir;
  let port;
  let closed;
  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pagedlm-electron-'));
    port = new FakePort();
    closed = jest.fn();
    serveInference(port, { Engine, onClosed: closed });
    port.send({ type: 'load', modelPath, cacheFile: path.join(dir, 'cache.pgkv'), contextLength: 256 });
    await port.next((m) => m.type === 'ready' || m.type === 'load-failed');
  });
  afterAll(async () => {
    if (!closed.mock.calls.length) {
      port.send({ type: 'quit' });
      await port.next((m) => m.type === 'closed');
    }
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('load reports progress, then ready (starting cold when no cache was saved)', () => {
    const fractions = port.posted.filter((m) => m.type === 'progress').map((m) => m.fraction);
    expect(fractions.length).toBeGreaterThan(0);
    expect(fractions[fractions.length - 1]).toBe(1);
    expect(port.posted.find((m) => m.type === 'ready')).toEqual({ type: 'ready', model: expect.any(String), contextLength: 256, cachedBlocks: 0 });
  });

  test('a chat streams its tokens, then done with the whole text', async () => {
    const since = port.posted.length;
    port.send({ type: 'chat', id: 1, messages: [{ role: 'user', content: 'Hello there' }], maxTokens: 8 });
    const done = await port.next(ended(1), since);
    expect(done).toMatchObject({ type: 'done', truncatedMessages: 0, tokensPerSecond: expect.any(Number) });
    const streamed = port.posted.slice(since).filter(ofChat(1, 'token')).map((m) => m.text);
    expect(streamed.length).toBeGreaterThan(0);
    expect(streamed.join('')).toBe(done.text);
  });

  test('abort ends a chat early with finishReason abort', async () => {
    const since = port.posted.length;
    port.send({ type: 'chat', id: 2, messages: [{ role: 'user', content: 'Talk for a long time' }], maxTokens: 200 });
    port.send({ type: 'abort', id: 2 }); // handled after the chat has started, before it can have finished
    const done = await port.next(ended(2), since);
    expect(done).toMatchObject({ type: 'done', finishReason: 'abort' });
    expect(port.posted.slice(since).filter(ofChat(2, 'token')).length).toBeLessThan(200);
  });

  test('a chat that fails is answered with failed, and the worker goes on serving', async () => {
    const since = port.posted.length;
    port.send({ type: 'chat', id: 3, messages: [{ role: 'robot', content: 'beep' }] });
    expect(await port.next(ended(3), since)).toMatchObject({ type: 'failed', message: expect.stringContaining('messages[0].role') });
    port.send({ type: 'load', modelPath });
    expect(await port.next((m) => m.type === 'load-failed', since)).toMatchObject({ code: 'ERR_ALREADY_LOADED' });
    port.send({ type: 'teleport', id: 4 });
    expect(await port.next(ended(4), since)).toMatchObject({ type: 'failed', code: 'ERR_UNKNOWN_MESSAGE' });
    port.send({ type: 'chat', id: 5, messages: [{ role: 'user', content: 'Still there?' }], maxTokens: 4 });
    expect(await port.next(ended(5), since)).toMatchObject({ type: 'done' });
  });

  test('a 50-turn conversation, sent whole each time as the window does, keeps being answered', async () => {
    const messages = [{ role: 'system', content: 'You are a helpful assistant.' }];
    let truncated = 0;
    for (let turn = 1; turn <= 50; turn++) {
      const id = 100 + turn;
      messages.push({ role: 'user', content: `Question ${turn}: what comes after ${turn}?` });
      const since = port.posted.length;
      port.send({ type: 'chat', id, messages, maxTokens: 8 });
      const done = await port.next(ended(id), since);
      expect(done.type).toBe('done');
      truncated = done.truncatedMessages;
      messages.push({ role: 'assistant', content: done.text });
    }
    expect(truncated).toBeGreaterThan(40);
  });

  test('quit saves the cache and closes the engine; later chats are refused', async () => {
    const since = port.posted.length;
    port.send({ type: 'quit' });
    const bye = await port.next((m) => m.type === 'closed', since);
    expect(bye.savedBlocks).toBeGreaterThan(0);
    expect(fs.statSync(path.join(dir, 'cache.pgkv')).size).toBeGreaterThan(0);
    expect(closed).toHaveBeenCalledTimes(1);
    port.send({ type: 'chat', id: 6, messages: [{ role: 'user', content: 'Hi' }] });
    expect(await port.next(ended(6), since)).toMatchObject({ type: 'failed', code: 'ERR_CLOSED' });
  });

  test('the next start loads the saved cache', async () => {
    const again = new FakePort();
    serveInference(again, { Engine });
    again.send({ type: 'load', modelPath, cacheFile: path.join(dir, 'cache.pgkv'), contextLength: 256 });
    const ready = await again.next((m) => m.type === 'ready');
    expect(ready.cachedBlocks).toBeGreaterThan(0);
    again.send({ type: 'quit' });
    await again.next((m) => m.type === 'closed');
  });
});

describeWithModels('the Electron example: the main process relay over worker.js in its own process', ['synth-tiny-f16.gguf'], (modelPath) => {
  // worker.js requires 'pagedlm' as the app does: a folder with that package name resolves it to this checkout.
  let modules;
  beforeAll(() => {
    modules = fs.mkdtempSync(path.join(os.tmpdir(), 'pagedlm-modules-'));
    fs.symlinkSync(ROOT, path.join(modules, 'pagedlm'), 'dir');
  });
  afterAll(() => fs.rmSync(modules, { recursive: true, force: true }));

  // utilityProcess.fork's stand-in: worker.js in a child process (its parentPort a shim over Node's IPC),
  // behind UtilityProcess's surface: 'message', 'exit' with a code, postMessage, kill.
  const started = [];
  function startProcess(script = path.join(ROOT, 'examples', 'electron', 'worker.js')) {
    const child = fork(path.join(ROOT, 'test', 'support', 'utility-process.js'), [script], {
      env: { ...process.env, NODE_PATH: modules },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    started.push(child);
    const utility = new EventEmitter();
    child.on('message', (message) => utility.emit('message', message));
    child.on('exit', (code) => utility.emit('exit', code ?? 1)); // killed: a signal, no code
    utility.postMessage = (message) => child.send(message);
    utility.kill = () => child.kill();
    return utility;
  }
  afterEach(() => {
    for (const child of started.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });

  // The window: every event the relay sends it, and a wait for one.
  function fakeWindow() {
    const events = [];
    const emitter = new EventEmitter();
    return {
      events,
      send: (event) => {
        events.push(structuredClone(event));
        emitter.emit('event', event);
      },
      next: (test, since = 0) =>
        new Promise((resolve) => {
          const found = events.slice(since).find(test);
          if (found) return resolve(found);
          const listener = (event) => {
            if (!test(event)) return;
            emitter.off('event', listener);
            resolve(event);
          };
          emitter.on('event', listener);
        }),
    };
  }

  test('chats stream through; a crash fails the chat in flight and is reported; restart loads again; quit saves the cache and ends the process', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pagedlm-relay-'));
    const cacheFile = path.join(dir, 'cache.pgkv');
    const window = fakeWindow();
    const quitReady = jest.fn();
    const relay = createRelay({ startProcess, toWindow: window.send, modelPath, cacheFile, maxTokens: 8, onQuitReady: quitReady });
    relay.chat(1, [{ role: 'user', content: 'Hi' }]);
    expect(window.events[0]).toMatchObject({ type: 'failed', id: 1, code: 'ERR_NOT_LOADED' });
    relay.start();
    await window.next((e) => e.type === 'ready');

    relay.chat(2, [{ role: 'user', content: 'Hello' }]);
    const done = await window.next((e) => e.id === 2 && e.type === 'done');
    expect(window.events.filter((e) => e.id === 2 && e.type === 'token').map((e) => e.text).join('')).toBe(done.text);

    // The inference process dies while a chat is in flight (killed at once, so the chat cannot finish first).
    const since = window.events.length;
    relay.chat(3, [{ role: 'user', content: 'Go on' }]);
    started[started.length - 1].kill('SIGKILL');
    expect(await window.next((e) => e.id === 3 && e.type !== 'token', since)).toMatchObject({ type: 'failed', code: 'ERR_WORKER_EXITED' });
    expect(await window.next((e) => e.type === 'crashed', since)).toMatchObject({ message: expect.stringContaining('stopped') });
    relay.chat(4, [{ role: 'user', content: 'Anyone?' }]);
    expect(await window.next((e) => e.id === 4, since)).toMatchObject({ type: 'failed', code: 'ERR_NOT_LOADED' });

    relay.restart();
    await window.next((e) => e.type === 'ready', since);
    relay.chat(5, [{ role: 'user', content: 'Back?' }]);
    expect(await window.next((e) => e.id === 5 && e.type !== 'token', since)).toMatchObject({ type: 'done' });

    expect(relay.quit()).toBe(true);
    expect(await window.next((e) => e.type === 'closed', since)).toMatchObject({ savedBlocks: expect.any(Number) });
    await new Promise((resolve) => {
      const poll = setInterval(() => quitReady.mock.calls.length && (clearInterval(poll), resolve()), 10);
    });
    expect(fs.existsSync(cacheFile)).toBe(true);
    expect(relay.quit()).toBe(false); // nothing runs any more: the app quits at once
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('a model that cannot be loaded is reported to the window, and restart tries again', async () => {
    const window = fakeWindow();
    const relay = createRelay({ startProcess, toWindow: window.send, modelPath: path.join(modules, 'missing.gguf') });
    relay.start();
    expect(await window.next((e) => e.type === 'load-failed')).toMatchObject({ message: expect.stringContaining('missing.gguf'), code: expect.any(String) });
    relay.restart();
    await window.next((e) => e.type === 'load-failed', window.events.length);
    expect(window.events.filter((e) => e.type === 'crashed')).toEqual([]); // the replaced process's end is expected
    relay.quit();
  });

  test('a process that does not answer quit is killed at the deadline, so quitting never hangs', async () => {
    const silent = path.join(modules, 'silent.js');
    fs.writeFileSync(silent, 'process.parentPort.on("message", () => {}); setInterval(() => {}, 1000);\n');
    const quitReady = jest.fn();
    const relay = createRelay({ startProcess: () => startProcess(silent), toWindow: () => {}, modelPath, quitDeadlineMs: 200, onQuitReady: quitReady });
    relay.start();
    expect(relay.quit()).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect(quitReady).toHaveBeenCalledTimes(1);
  });
});
