'use strict';
// pagedlm inspect: the memory planner's answer for a model (Engine.inspect), read from its metadata without
// loading the weights: what it needs, what memory there is, and the longest context that fits.

const { modelPath, formatBytes, count, kvCacheTypes } = require('./common');

const MEMORY_SOURCES = {
  MemAvailable: 'available now (MemAvailable)',
  'physical memory': 'physical memory',
  cuda: 'free on the device',
  option: 'as given by --memory',
};

const CONTEXT_LIMITS = {
  model: "the model's trained context",
  memory: 'the KV budget',
  option: 'the contextLength option',
  kvCache: 'the KV pool option',
};

function inspectOptions(values) {
  return {
    device: values.device,
    memory: values.memory,
    sequences: values.sequences,
    kvCache: kvCacheTypes(values),
  };
}

// 'int8', or 'K int8 / V int4' where the two differ.
function kvTypesName(plan) {
  return plan.kvDtype ?? `K ${plan.kvKType} / V ${plan.kvVType}`;
}

/** The plan as [label, text] lines. */
function describePlan(plan) {
  const byType = Object.entries(plan.weightBytesByType)
    .sort(([, a], [, b]) => b - a)
    .map(([type, bytes]) => `${type} ${formatBytes(bytes)}`)
    .join(', ');
  const perToken = Object.entries(plan.kvBytesPerToken)
    .map(([dtype, bytes]) => `${dtype} ${formatBytes(bytes)}${dtype === plan.kvDtype ? ' (planned)' : ''}`)
    .join(', ') + (plan.kvDtype === null ? `; K ${plan.kvKType} / V ${plan.kvVType} ${formatBytes(plan.kvPlannedBytesPerToken)} (planned)` : '');
  const sequences = plan.sequences === 1 ? 'one sequence' : `each of ${count(plan.sequences)} sequences`;
  return [
    ['model', `${plan.name || '(unnamed)'} (${plan.architecture}), ${plan.files} file${plan.files === 1 ? '' : 's'}`],
    ['parameters', `${(plan.parameters / 1e6).toFixed(2)} M`],
    ['weights', `${formatBytes(plan.weightBytes)} (${byType})`],
    ['shape', `${plan.layers} layers, dim ${plan.embeddingLength}, ${plan.heads} heads / ${plan.kvHeads} KV heads of ${plan.headDim}, ffn ${plan.feedForwardLength}, vocabulary ${count(plan.vocabSize)}`],
    ['trained context', `${count(plan.trainedContextLength)} tokens`],
    ['KV per token', perToken],
    ['device', plan.gpu ? `${plan.device} (${plan.gpu})` : plan.device],
    ['memory', `${formatBytes(plan.memoryBytes)} ${MEMORY_SOURCES[plan.memorySource] ?? plan.memorySource}`],
    ['weights there', formatBytes(plan.deviceWeightBytes)],
    ['KV budget', `${formatBytes(plan.kvBudgetBytes)} (half of what the weights leave)`],
    ['fits', `${count(plan.maxContextLength)} tokens of ${kvTypesName(plan)} KV for ${sequences}`],
    ['load picks', `a context of ${count(plan.contextLength)} tokens, limited by ${CONTEXT_LIMITS[plan.contextLimit] ?? plan.contextLimit}`],
  ];
}

async function inspect(values, positionals) {
  const model = modelPath(values, positionals);
  const { Engine } = require('..');
  const plan = await Engine.inspect(model, inspectOptions(values));
  if (values.json) {
    console.log(JSON.stringify(plan, null, 2));
    return;
  }
  const lines = describePlan(plan);
  const width = Math.max(...lines.map(([label]) => label.length)) + 2;
  for (const [label, text] of lines) console.log(`${label.padEnd(width)}${text}`);
}

module.exports = { inspect, describePlan };
