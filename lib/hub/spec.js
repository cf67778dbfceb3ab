'use strict';

// Model specs that name a file on a Hugging Face-style hub:
//   hf:owner/repo[@revision]/path/to/file.gguf   one file (a split model's first part brings all its parts)
//   hf:owner/repo[@revision]:Q4_K_M              the GGUF of that quantization, picked from the listing
//   hf:owner/repo[@revision]                     the repository's only GGUF model
// and the choice of files from a repository's listing.

const { PagedlmError } = require('../errors');

const PREFIX = 'hf:';
// Hub names: letters, digits, '-', '_', '.'; never '.' or '..' alone (they would walk the cache's folders).
const NAME = /^[A-Za-z0-9_.-]+$/;
const QUANT = /^[A-Za-z0-9_]+$/;
const SPLIT_PART = /-(\d{5})-of-(\d{5})\.gguf$/i;

function isHubSpec(text) {
  return typeof text === 'string' && text.startsWith(PREFIX);
}

function specError(text, why) {
  return new PagedlmError(`cannot read '${text}' as a model spec: ${why} (expected hf:owner/repo[@revision]/file.gguf or hf:owner/repo[@revision]:QUANT)`, 'ERR_HUB_SPEC');
}

function checkName(value, what, text) {
  if (!NAME.test(value) || value === '.' || value === '..') throw specError(text, `${what} '${value}' is refused: a name holds only letters, digits, '-', '_' and '.', and is not '.' or '..'`);
  return value;
}

/**
 * A relative file path inside a repository, checked so that joining it to a folder stays inside that folder:
 * no absolute path, no '.' or '..' segment, no empty segment, no backslash, no NUL, no control character.
 * Returns the reason it is unsafe, or null.
 */
function unsafePathReason(filePath) {
  if (typeof filePath !== 'string' || filePath.length === 0) return 'it is empty';
  if (filePath.length > 1024) return 'it is longer than 1024 characters';
  if (/[\u0000-\u001f\u007f]/.test(filePath)) return 'it holds a control character';
  if (filePath.includes('\\')) return 'it holds a backslash';
  if (filePath.startsWith('/') || /^[A-Za-z]:/.test(filePath)) return 'it is absolute';
  const segments = filePath.split('/');
  if (segments.some((s) => s === '' || s === '.' || s === '..')) return "it has an empty, '.' or '..' segment";
  return null;
}

/** 'hf:owner/repo@rev:Q4_K_M' -> { owner, repo, revision, file, quant, explicitRevision }; `file` and `quant` are null when absent. */
function parseSpec(text, { requirePrefix = true } = {}) {
  if (typeof text !== 'string') throw new TypeError(`a model spec must be a string, got ${typeof text}`);
  let rest = text;
  if (rest.startsWith(PREFIX)) rest = rest.slice(PREFIX.length);
  else if (requirePrefix) throw specError(text, `it does not start with '${PREFIX}'`);
  let quant = null;
  const colon = rest.indexOf(':');
  if (colon >= 0) {
    quant = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!QUANT.test(quant)) throw specError(text, `the quantization '${quant}' may hold only letters, digits and '_'`);
  }
  const [owner, repoPart, ...fileParts] = rest.split('/');
  if (!owner || !repoPart) throw specError(text, 'it names no owner/repo');
  let repo = repoPart;
  let revision = 'main';
  const at = repoPart.indexOf('@');
  if (at >= 0) {
    repo = repoPart.slice(0, at);
    revision = repoPart.slice(at + 1);
    if (!revision) throw specError(text, "'@' is followed by no revision");
  }
  checkName(owner, 'the owner', text);
  checkName(repo, 'the repository', text);
  checkName(revision, 'the revision', text);
  let file = null;
  if (fileParts.length > 0) {
    file = fileParts.join('/');
    if (quant !== null) throw specError(text, 'give a file path or a quantization, not both');
    const unsafe = unsafePathReason(file);
    if (unsafe) throw specError(text, `the file path '${file}' is refused: ${unsafe}`);
    if (!/\.gguf$/i.test(file)) throw specError(text, `'${file}' is not a .gguf file`);
  }
  return { owner, repo, revision, file, quant, explicitRevision: at >= 0 };
}

/** The spec as text again, canonical: 'hf:owner/repo@main/file.gguf'. */
function formatSpec({ owner, repo, revision, file, quant }) {
  return `${PREFIX}${owner}/${repo}@${revision}${file ? `/${file}` : ''}${quant ? `:${quant}` : ''}`;
}

// 'dir/model-Q4_K_M-00002-of-00003.gguf' -> { base: 'dir/model-Q4_K_M', part: 2, parts: 3 }; a whole file has part 1 of 1.
function splitInfo(filePath) {
  const match = SPLIT_PART.exec(filePath);
  if (!match) return { base: filePath.replace(/\.gguf$/i, ''), part: 1, parts: 1 };
  return { base: filePath.slice(0, match.index), part: Number(match[1]), parts: Number(match[2]) };
}

function splitPartName(base, part, parts) {
  const pad = (n) => String(n).padStart(5, '0');
  return `${base}-${pad(part)}-of-${pad(parts)}.gguf`;
}

// A multimodal projector is a GGUF beside the model, never the model itself.
const isModelGguf = (filePath) => /\.gguf$/i.test(filePath) && !/^mmproj/i.test(filePath.split('/').pop());

/**
 * The GGUF models among `paths`: one entry per whole file or complete split set, as
 * { files: [first part, ...], base }, sorted by the order choose() uses. Incomplete split sets are left out.
 */
function modelsIn(paths) {
  const present = new Set(paths);
  const groups = new Map();
  for (const p of paths) {
    if (!isModelGguf(p)) continue;
    const { base, part, parts } = splitInfo(p);
    if (part !== 1) continue;
    const files = Array.from({ length: parts }, (_, i) => (parts === 1 ? p : splitPartName(base, i + 1, parts)));
    if (files.every((f) => present.has(f))) groups.set(p, { files, base });
  }
  // Deterministic: the shortest path first (the plain file before variants such as '-imatrix' or a subfolder's copy), then by code point.
  return [...groups.values()].sort((a, b) => a.files[0].length - b.files[0].length || (a.files[0] < b.files[0] ? -1 : 1));
}

// Whether a file name carries the quantization tag: case-insensitively, not inside a longer tag (Q4_K is not Q4_K_M).
function hasQuant(filePath, quant) {
  const name = filePath.split('/').pop().replace(/\.gguf$/i, '').replace(/-\d{5}-of-\d{5}$/i, '');
  const escaped = quant.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`(^|[^A-Za-z0-9])${escaped}($|[^A-Za-z0-9_])`, 'i').test(name);
}

// The quantization tags seen in the file names, for an error that says what there is.
function quantsIn(models) {
  const tags = new Set();
  for (const { base } of models) {
    const match = /(?:^|[^A-Za-z0-9])((?:I?Q\d+_[A-Z0-9_]+|Q\d+|F16|BF16|F32))$/i.exec(base.split('/').pop());
    if (match) tags.add(match[1].toUpperCase());
  }
  return [...tags].sort();
}

function describeModels(models) {
  if (models.length === 0) return 'it has no GGUF model files';
  const quants = quantsIn(models);
  const names = models.slice(0, 12).map((m) => m.files[0] + (m.files.length > 1 ? ` (+${m.files.length - 1} parts)` : ''));
  return `it has ${quants.length ? `quantizations ${quants.join(', ')}; files ` : ''}${names.join(', ')}${models.length > 12 ? `, and ${models.length - 12} more` : ''}`;
}

/**
 * The files `spec` names among `paths` (a repository listing or the cache's copy of one):
 * { files: [the path to load, other split parts...], alternatives: [first files of the other matches] }.
 */
function choose(spec, paths) {
  const where = `${spec.owner}/${spec.repo}@${spec.revision}`;
  const models = modelsIn(paths);
  if (spec.file) {
    const { base, part, parts } = splitInfo(spec.file);
    const first = parts === 1 ? spec.file : splitPartName(base, 1, parts);
    const chosen = models.find((m) => m.files[0] === first);
    if (!chosen || part > parts) throw new PagedlmError(`${where} has no file ${spec.file}${parts > 1 ? ` with all ${parts} parts` : ''}: ${describeModels(models)}`, 'ERR_HUB_NOT_FOUND');
    return { files: chosen.files, alternatives: [] };
  }
  const matches = spec.quant ? models.filter((m) => hasQuant(m.files[0], spec.quant)) : models;
  if (matches.length === 0) {
    const wanted = spec.quant ? `no GGUF file of quantization ${spec.quant}` : 'no GGUF model';
    throw new PagedlmError(`${where} has ${wanted}: ${describeModels(models)}`, 'ERR_HUB_NO_MATCH');
  }
  if (!spec.quant && matches.length > 1) {
    throw new PagedlmError(`${where} has several GGUF models: name one with :QUANT or /file.gguf; ${describeModels(models)}`, 'ERR_HUB_NO_MATCH');
  }
  return { files: matches[0].files, alternatives: matches.slice(1).map((m) => m.files[0]) };
}

module.exports = { PREFIX, isHubSpec, parseSpec, formatSpec, unsafePathReason, choose, splitInfo, modelsIn };
