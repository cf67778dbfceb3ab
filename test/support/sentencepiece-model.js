'use strict';
// The vocabulary of a SentencePiece model file (a protobuf ModelProto, e.g. ../shared/models/
// llama2-tokenizer.model) as GGUF tokenizer metadata, for models that need a real 32K vocabulary
// (benchmarks of work that scales with the vocabulary). Reads only what GGUF carries: each piece's text,
// score and type (ModelProto field 1: pieces { 1: piece, 2: score, 3: type }).
const fs = require('node:fs');

function readVarint(buf, at) {
  let value = 0;
  let shift = 0;
  for (;;) {
    const byte = buf[at++];
    value += (byte & 0x7f) * 2 ** shift;
    if (byte < 0x80) return [value, at];
    shift += 7;
  }
}

// Calls visit(field, wireType, value, start, end) for each field of a message in buf[start, end).
function forEachField(buf, start, end, visit) {
  let at = start;
  while (at < end) {
    let key;
    [key, at] = readVarint(buf, at);
    const field = Math.floor(key / 8);
    const wire = key & 7;
    if (wire === 0) {
      let v;
      [v, at] = readVarint(buf, at);
      visit(field, wire, v);
    } else if (wire === 1) {
      at += 8;
    } else if (wire === 2) {
      let length;
      [length, at] = readVarint(buf, at);
      visit(field, wire, null, at, at + length);
      at += length;
    } else if (wire === 5) {
      visit(field, wire, buf.readFloatLE(at));
      at += 4;
    } else {
      throw new Error(`unsupported protobuf wire type ${wire}`);
    }
  }
}

/** { metadata: GGUF tokenizer.ggml.* entries, vocabSize } of a SentencePiece model file. */
function sentencePieceMetadata(file) {
  const buf = fs.readFileSync(file);
  const tokens = [];
  const scores = [];
  const types = [];
  forEachField(buf, 0, buf.length, (field, wire, _v, start, end) => {
    if (field !== 1 || wire !== 2) return;
    let piece = '';
    let score = 0;
    let type = 1; // NORMAL, the proto's default
    forEachField(buf, start, end, (f, w, value, s, e) => {
      if (f === 1 && w === 2) piece = buf.toString('utf8', s, e);
      else if (f === 2 && w === 5) score = value;
      else if (f === 3 && w === 0) type = value;
    });
    tokens.push(piece);
    scores.push(score);
    types.push(type);
  });
  const idOfType = (t) => types.indexOf(t);
  const metadata = [
    ['tokenizer.ggml.model', 'string', 'llama'],
    ['tokenizer.ggml.tokens', ['string'], tokens],
    ['tokenizer.ggml.scores', ['f32'], scores],
    ['tokenizer.ggml.token_type', ['i32'], types],
    ['tokenizer.ggml.unknown_token_id', 'u32', Math.max(0, idOfType(2))],
    ['tokenizer.ggml.bos_token_id', 'u32', tokens.indexOf('<s>')],
    ['tokenizer.ggml.eos_token_id', 'u32', tokens.indexOf('</s>')],
  ];
  return { metadata, vocabSize: tokens.length };
}

module.exports = { sentencePieceMetadata };
