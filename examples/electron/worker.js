'use strict';
// Entry point of the utility process (main.js forks it): inference runs here, so a long generation or a
// crash never blocks or takes down the main process and its windows.
const { Engine } = require('pagedlm');
const { serveInference } = require('./inference');

// After 'quit' has been answered the process ends; the main process then quits the app.
serveInference(process.parentPort, { Engine, onClosed: () => process.exit(0) });
