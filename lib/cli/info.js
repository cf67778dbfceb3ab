'use strict';
// pagedlm info: what a loaded model is, and the longest context whose KV cache fits --memory.

const { loadEngine, formatBytes, count } = require('./common');

const DEFAULT_MEMORY = 4 * 2 ** 30;

async function info(values, positionals) {
  const engine = await loadEngine(values, positionals, { prefault: false });
  try {
    const i = engine.info();
    const memory = values.memory ?? DEFAULT_MEMORY;
    const fits = Math.floor(memory / i.kvBytesPerToken);
    const lines = [
      ['model', `${i.name || '(unnamed)'} (${i.architecture})`],
      ['parameters', `${(i.parameters / 1e6).toFixed(2)} M, ${i.tensorType}, ${(i.weightBytes / 2 ** 20).toFixed(1)} MiB`],
      ['shape', `${i.layers} layers, dim ${i.embeddingLength}, ${i.heads} heads / ${i.kvHeads} KV heads of ${i.headDim}, ffn ${i.feedForwardLength}`],
      ['vocabulary', `${i.vocabSize} tokens (${i.tokenizer})`],
      ['context', `${i.trainedContextLength} trained, ${i.contextLength} loaded`],
      ['KV cache', `${i.kvBytesPerToken} bytes/token (${i.kvDtype ?? `K ${i.kvKType} / V ${i.kvVType}`}), ${i.kvBlocks} blocks of ${i.kvBlockSize} = ${(i.kvPoolBytes / 2 ** 20).toFixed(1)} MiB`],
      ['backend', `${i.backend} (${i.cpuKernels} kernels, ${i.threads} threads)`],
      ['chat', i.chatTemplate ? 'template from the file' : 'no template in the file (ChatML fallback)'],
      ['fits', `${count(fits)} tokens of ${i.kvDtype ?? `K ${i.kvKType} / V ${i.kvVType}`} KV in ${formatBytes(memory)} (longest context ${count(Math.min(fits, i.trainedContextLength))} of the trained ${count(i.trainedContextLength)})`],
    ];
    for (const [k, v] of lines) console.log(`${k.padEnd(12)}${v}`);
  } finally {
    await engine.close();
  }
}

module.exports = { info };
