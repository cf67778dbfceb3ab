'use strict';

const { Engine } = require('./engine');
const { PagedlmError } = require('./errors');
const { jsonSchemaToGrammar } = require('./grammar');
const { DEFAULT_SAMPLING } = require('./sampling');

module.exports = { Engine, PagedlmError, DEFAULT_SAMPLING, jsonSchemaToGrammar };
