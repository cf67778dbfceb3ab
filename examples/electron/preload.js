'use strict';
// The window's only door to the engine: a small API over IPC, no Node in the page.
const { contextBridge, ipcRenderer } = require('electron');

contextBridge.exposeInMainWorld('pagedlm', {
  chat: (id, messages) => ipcRenderer.invoke('pagedlm:chat', id, messages),
  abort: (id) => ipcRenderer.send('pagedlm:abort', id),
  onToken: (listener) => ipcRenderer.on('pagedlm:token', (event, id, text) => listener(id, text)),
  onProgress: (listener) => ipcRenderer.on('pagedlm:progress', (event, fraction) => listener(fraction)),
  onReady: (listener) => ipcRenderer.on('pagedlm:ready', (event, name) => listener(name)),
});
