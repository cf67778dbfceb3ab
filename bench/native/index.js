'use strict';
// The benchmarks' native helper, pagedlm_bench.node (bench/native/addon.cpp), never part of pagedlm's own
// addon or API. The first require() builds it with cmake-js into build-bench/ (the engine's sources compile
// once more there, a few minutes); delete build-bench/ to rebuild it after changing the sources.
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { PagedlmError } = require('../../lib/errors');
const { checkObject, int } = require('../../lib/options');

const root = path.join(__dirname, '..', '..');
const buildDir = path.join(root, 'build-bench');
const addonPath = path.join(buildDir, 'Release', 'pagedlm_bench.node');

let addon = null;

function loadAddon() {
  if (addon) return addon;
  if (!fs.existsSync(addonPath)) {
    console.error('bench/native: building pagedlm_bench.node into build-bench/ (once)');
    // stdout to stderr as well: the bench scripts print their results on stdout.
    execFileSync('npx', ['cmake-js', 'compile', '--out', buildDir, '--target', 'pagedlm_bench', '--CDPAGEDLM_BUILD_BENCH=ON', '--CDPAGEDLM_BUILD_TESTS=OFF', '--CDPAGEDLM_CUDA=OFF'], {
      cwd: root,
      stdio: ['ignore', process.stderr, process.stderr],
    });
  }
  addon = require(addonPath);
  return addon;
}

const kCreate = Symbol('create');

/**
 * This machine's streaming-read bandwidth, the floor decode speed is judged against: a buffer in huge pages
 * (as the CPU backend keeps its weights), touched once, and the threads that read it, measured as often as
 * needed without allocating or freeing anything in between. On a VM whose balloon reports freed pages to the
 * host, freeing hundreds of MiB costs CPU time seconds later, on the cores a decode being timed is using.
 */
class ReadBandwidthProbe {
  #handle;
  #last = Promise.resolve(); // measurements run one after another: two at once would halve each other
  #closed = false;

  constructor(token, handle, { bufferBytes, threads }) {
    if (token !== kCreate) throw new TypeError('use `await ReadBandwidthProbe.open(options)` to create a probe');
    this.#handle = handle;
    this.bufferBytes = bufferBytes;
    this.threads = threads;
  }

  /**
   * Resolves to a probe of `threads` threads (default: all cores) over a `megabytes` buffer (default 512).
   * Wrong options throw here, not in a rejected promise.
   */
  static open(openOptions = {}) {
    const o = checkObject(openOptions, 'options');
    const threads = int(o.threads, 'threads', 1, 1024) ?? os.availableParallelism();
    const bufferBytes = (int(o.megabytes, 'megabytes', 16, 1 << 20) ?? 512) * 2 ** 20;
    return loadAddon()
      .openReadBandwidthProbe(bufferBytes, threads)
      .then((handle) => new ReadBandwidthProbe(kCreate, handle, { bufferBytes, threads }));
  }

  /**
   * Reads the buffer `passes` times (default 5) on a libuv worker; resolves to { bytesPerSecond (the best
   * pass), medianBytesPerSecond, bufferBytes, threads, passes }.
   */
  measure(measureOptions = {}) {
    const passes = int(checkObject(measureOptions, 'options').passes, 'passes', 1, 1000) ?? 5;
    if (this.#closed) return Promise.reject(new PagedlmError('the bandwidth probe is closed', 'ERR_CLOSED'));
    const result = this.#last.then(() => loadAddon().measureReadBandwidthProbe(this.#handle, passes));
    this.#last = result.catch(() => {});
    return result;
  }

  /** Frees the buffer once the measurements already asked for have ended. Idempotent; later measure() calls reject with ERR_CLOSED. */
  close() {
    if (this.#closed) return;
    this.#closed = true;
    this.#last.then(() => loadAddon().closeReadBandwidthProbe(this.#handle));
  }
}

module.exports = { ReadBandwidthProbe };
