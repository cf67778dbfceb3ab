'use strict';
// Runs an Electron utility-process script (argv[2]) under plain Node: `process.parentPort` as Electron gives
// it (an EventEmitter of { data } message events, with postMessage), carried over Node's IPC channel.
const { EventEmitter } = require('node:events');

const parentPort = new EventEmitter();
parentPort.postMessage = (message) => process.send(message);
process.on('message', (data) => parentPort.emit('message', { data, ports: [] }));
process.parentPort = parentPort;

require(process.argv[2]);
