'use strict';
// The main process: a window, and a relay (relay.js) to the utility process that runs inference (worker.js,
// logic in inference.js). It never waits on inference: requests and answers are messages, and a load
// failure, a failed chat or the utility process dying reach the window as events. On quit the prefix cache
// is saved, with a deadline so quitting never hangs.
const path = require('node:path');
const { app, BrowserWindow, ipcMain, utilityProcess } = require('electron');
const { createRelay } = require('./relay');

// Packaged apps find the model in resources/models; during development, pass it as PAGEDLM_MODEL.
const modelPath = process.env.PAGEDLM_MODEL || path.join(process.resourcesPath, 'models', 'model.gguf');
// The prefix cache survives restarts: saved on quit, loaded at start.
const cacheFile = path.join(app.getPath('userData'), 'pagedlm-cache.pgkv');

let win = null;

const relay = createRelay({
  startProcess: () => utilityProcess.fork(path.join(__dirname, 'worker.js'), [], { serviceName: 'pagedlm inference' }),
  toWindow: (event) => {
    if (win && !win.isDestroyed()) win.webContents.send('pagedlm:event', event);
  },
  modelPath,
  cacheFile,
  maxTokens: 512,
  onQuitReady: () => app.quit(),
});

function createWindow() {
  win = new BrowserWindow({
    width: 800,
    height: 640,
    webPreferences: { preload: path.join(__dirname, 'preload.js'), contextIsolation: true, sandbox: true },
  });
  win.loadFile('index.html');
  win.on('closed', () => {
    relay.abortAll(); // nobody is reading those replies any more
    win = null;
  });
}

app.whenReady().then(() => {
  createWindow();
  relay.start();
});

ipcMain.on('pagedlm:chat', (event, id, messages) => relay.chat(id, messages));
ipcMain.on('pagedlm:abort', (event, id) => relay.abort(id));
ipcMain.on('pagedlm:restart', () => relay.restart());

app.on('before-quit', (event) => {
  if (relay.quit()) event.preventDefault(); // app.quit() again once the cache is saved
});

app.on('window-all-closed', () => app.quit());
