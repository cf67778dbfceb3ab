'use strict';
// The window's only door to the engine: a small API over IPC, no Node in the page.
const { contextBridge, ipcRenderer } = require('electron');

contextBridge.exposeInMainWorld('pagedlm', {
  // Answers arrive as events: { type: 'token' | 'done' | 'failed', id, ... }.
  chat: (id, messages) => ipcRenderer.send('pagedlm:chat', id, messages),
  abort: (id) => ipcRenderer.send('pagedlm:abort', id),
  restart: () => ipcRenderer.send('pagedlm:restart'),
  // Every event of inference.js's protocol, plus { type: 'crashed', message } when the inference process dies.
  onEvent: (listener) => ipcRenderer.on('pagedlm:event', (event, message) => listener(message)),
});
