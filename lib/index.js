'use strict';

const { Engine } = require('./engine');
const { PagedlmError } = require('./errors');

module.exports = { Engine, PagedlmError };
