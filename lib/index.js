'use strict';

const { Engine } = require('./engine');
const { PagedlmError } = require('./errors');
const { DEFAULT_SAMPLING } = require('./sampling');

module.exports = { Engine, PagedlmError, DEFAULT_SAMPLING };
