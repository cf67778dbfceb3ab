'use strict';
// The main process's side of inference: it keeps the utility process (worker.js) running, relays the
// window's requests to it and its answers back, and never waits on inference. Whatever goes wrong reaches
// the window as an event: a chat the process cannot take is 'failed' at once, and when the process dies
// each chat in flight is 'failed' and the window gets 'crashed' (it may then ask for a restart). It has no
// Electron import: main.js passes in how to start the process, so it runs, and is tested, in plain Node.

/**
 * options: startProcess() -> a UtilityProcess (or anything with on('message'), on('exit', code),
 * postMessage, kill); toWindow(event); modelPath; cacheFile; maxTokens per reply; quitDeadlineMs, how long
 * quitting waits for the cache to be saved; onQuitReady(), called once the process has exited on quit.
 */
function createRelay({ startProcess, toWindow, modelPath, cacheFile, maxTokens = 512, quitDeadlineMs = 10000, onQuitReady = () => {} }) {
  let worker = null; // the utility process, while it runs
  let ready = false; // its model is loaded
  let quitting = false;
  const chats = new Set(); // ids sent to the process and not answered yet

  function start() {
    ready = false;
    const child = startProcess();
    worker = child;
    child.on('message', (message) => {
      if (message.type === 'ready') ready = true;
      if (message.type === 'done' || message.type === 'failed') chats.delete(message.id);
      toWindow(message);
    });
    child.on('exit', (code) => {
      if (worker !== child) return; // replaced by restart(): its end is expected
      worker = null;
      ready = false;
      const reason = `the inference process stopped (exit code ${code})`;
      for (const id of chats) toWindow({ type: 'failed', id, message: reason, code: 'ERR_WORKER_EXITED' });
      chats.clear();
      if (quitting) onQuitReady();
      else toWindow({ type: 'crashed', message: reason });
    });
    child.postMessage({ type: 'load', modelPath, cacheFile });
  }

  return {
    start,
    /** Sends a chat; its tokens, then 'done' or 'failed', come back through toWindow. */
    chat(id, messages) {
      if (!worker || !ready || quitting) {
        toWindow({ type: 'failed', id, message: quitting ? 'the app is quitting' : 'the model is not loaded', code: 'ERR_NOT_LOADED' });
        return;
      }
      chats.add(id);
      worker.postMessage({ type: 'chat', id, messages, maxTokens });
    },
    abort(id) {
      worker?.postMessage({ type: 'abort', id });
    },
    /** Stops every chat in flight (their window closed). */
    abortAll() {
      for (const id of chats) worker?.postMessage({ type: 'abort', id });
    },
    /** Starts a fresh process after a crash or a failed load. */
    restart() {
      if (worker && ready) return;
      worker?.kill();
      worker = null;
      start();
    },
    /**
     * Asks the process to save the cache and close. true: the app must wait (onQuitReady follows, within
     * quitDeadlineMs, after which the process is killed); false: nothing runs, quit now.
     */
    quit() {
      if (!worker) return false;
      if (!quitting) {
        quitting = true;
        const child = worker;
        child.postMessage({ type: 'quit' });
        setTimeout(() => child.kill(), quitDeadlineMs).unref();
      }
      return true;
    },
  };
}

module.exports = { createRelay };
