'use strict';
// The main process owns the engine: one model for the whole app, loaded off the UI thread. The window
// asks for chats over IPC and receives tokens as they are generated; closing the window aborts them.
const path = require('node:path');
const { app, BrowserWindow, ipcMain } = require('electron');
const { Engine } = require('pagedlm');

// Packaged apps find the model in resources/models; during development, pass it as PAGEDLM_MODEL.
const modelPath = process.env.PAGEDLM_MODEL || path.join(process.resourcesPath, 'models', 'model.gguf');
// The prefix cache survives restarts: saved on quit, loaded at start.
const cacheFile = path.join(app.getPath('userData'), 'pagedlm-cache.pgkv');

let engine = null;
const running = new Map(); // request id -> AbortController

function createWindow() {
  const win = new BrowserWindow({
    width: 800,
    height: 640,
    webPreferences: { preload: path.join(__dirname, 'preload.js'), contextIsolation: true, sandbox: true },
  });
  win.loadFile('index.html');
  return win;
}

app.whenReady().then(async () => {
  const win = createWindow();
  engine = await Engine.load(modelPath, { onProgress: (f) => win.webContents.send('pagedlm:progress', f) });
  await engine.cache.load(cacheFile).catch(() => 0); // first run, or another model: start cold
  win.webContents.send('pagedlm:ready', engine.info().name);
});

// chat(id, messages) -> the final result; tokens arrive meanwhile as 'pagedlm:token' events.
ipcMain.handle('pagedlm:chat', async (event, id, messages) => {
  const controller = new AbortController();
  running.set(id, controller);
  event.sender.once('destroyed', () => controller.abort());
  try {
    const result = await engine.chat(messages, {
      maxTokens: 512,
      signal: controller.signal,
      onToken: ({ text }) => {
        if (!event.sender.isDestroyed()) event.sender.send('pagedlm:token', id, text);
      },
    });
    return { text: result.text, finishReason: result.finishReason, tokensPerSecond: result.timings.tokensPerSecond };
  } finally {
    running.delete(id);
  }
});

ipcMain.on('pagedlm:abort', (event, id) => running.get(id)?.abort());

let quitting = false;
app.on('before-quit', (event) => {
  if (quitting || !engine) return;
  event.preventDefault();
  quitting = true;
  engine.cache
    .save(cacheFile)
    .catch(() => 0)
    .then(() => engine.close())
    .finally(() => app.quit());
});

app.on('window-all-closed', () => app.quit());
