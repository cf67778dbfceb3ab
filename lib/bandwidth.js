'use strict';

const os = require('node:os');
const binding = require('./native');
const { PagedlmError, fromNative } = require('./errors');
const { checkObject, int } = require('./options');

const kCreate = Symbol('create');

/**
 * A buffer in the huge pages the CPU backend keeps its weights in, touched once, and the threads that read
 * it: this machine's streaming-read bandwidth, measured as often as needed without allocating or freeing
 * anything in between (on a VM whose balloon reports freed pages to the host, freeing hundreds of MiB costs
 * CPU time seconds later, on the cores a decode is using).
 */
class ReadBandwidthProbe {
  #handle;
  #last = Promise.resolve(); // measurements run one after another: two at once would halve each other
  #closed = false;

  constructor(token, handle, { bufferBytes, threads }) {
    if (token !== kCreate) throw new TypeError('use `await Engine.openReadBandwidthProbe(options)` to create a probe');
    this.#handle = handle;
    this.bufferBytes = bufferBytes;
    this.threads = threads;
  }

  // Checks the options before anything is queued: wrong ones throw here, not in a rejected promise.
  static open(options = {}) {
    const o = checkObject(options, 'options');
    const threads = int(o.threads, 'threads', 1, 1024) ?? os.availableParallelism();
    const bufferBytes = (int(o.megabytes, 'megabytes', 16, 1 << 20) ?? 512) * 2 ** 20;
    return binding.openReadBandwidthProbe(bufferBytes, threads).then(
      (handle) => new ReadBandwidthProbe(kCreate, handle, { bufferBytes, threads }),
      (error) => Promise.reject(fromNative(error)),
    );
  }

  /**
   * Reads the buffer `passes` times (default 5) on a libuv worker; resolves to { bytesPerSecond (the best
   * pass), medianBytesPerSecond, bufferBytes, threads, passes }.
   */
  measure(options = {}) {
    const passes = int(checkObject(options, 'options').passes, 'passes', 1, 1000) ?? 5;
    if (this.#closed) return Promise.reject(new PagedlmError('the bandwidth probe is closed', 'ERR_CLOSED'));
    const result = this.#last.then(() => binding.measureReadBandwidthProbe(this.#handle, passes)).catch((error) => Promise.reject(fromNative(error)));
    this.#last = result.catch(() => {});
    return result;
  }

  /**
   * Frees the buffer once the measurements already asked for have ended. Idempotent; later measure() calls
   * reject with ERR_CLOSED.
   */
  close() {
    if (this.#closed) return;
    this.#closed = true;
    this.#last.then(() => binding.closeReadBandwidthProbe(this.#handle));
  }
}

module.exports = { ReadBandwidthProbe };
