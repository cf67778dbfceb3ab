'use strict';
// `require('pagedlm/express')` for bundlers and tools that ignore package.json "exports".
module.exports = require('./lib/express');
