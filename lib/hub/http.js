'use strict';

// GET requests to the hub with Node's own http/https: redirects followed up to a bound, the token sent to the
// hub's own origin only (never to a CDN or any other host a redirect names), and a stall turned into an error.

const http = require('node:http');
const https = require('node:https');
const { PagedlmError } = require('../errors');

const MAX_REDIRECTS = 10;
const DEFAULT_TIMEOUT_MS = 30000;

function networkError(url, why, cause) {
  const error = new PagedlmError(`could not download ${url}: ${why}`, 'ERR_HUB_NETWORK');
  if (cause) error.cause = cause;
  return error;
}

function statusError(url, status) {
  if (status === 404) return new PagedlmError(`${url} was not found on the hub (HTTP 404): check the repository, revision and file name`, 'ERR_HUB_NOT_FOUND');
  if (status === 401 || status === 403) {
    return new PagedlmError(`${url} was refused (HTTP ${status}): a private or gated repository needs an access token (HF_TOKEN or hub.token) that may read it`, 'ERR_HUB_AUTH');
  }
  return networkError(url, `the hub answered HTTP ${status}`);
}

/**
 * Opens `url` and resolves to the final response once its headers arrived (redirects followed), status 2xx.
 * Options: headers, token (sent as a Bearer token to `tokenOrigin` only), timeoutMs (idle time before the
 * request fails), maxRedirects, acceptStatus (extra statuses to resolve with instead of an error).
 * The response's socket keeps the idle timeout while its body is read; when it expires, `response.hubError` says so.
 */
function open(url, { headers = {}, token, tokenOrigin, timeoutMs = DEFAULT_TIMEOUT_MS, maxRedirects = MAX_REDIRECTS, acceptStatus = [] } = {}) {
  return new Promise((resolve, reject) => {
    const visit = (current, hops) => {
      let target;
      try {
        target = new URL(current);
      } catch {
        reject(new PagedlmError(`the hub redirected to ${JSON.stringify(current)}, which is not a URL`, 'ERR_HUB_PROTOCOL'));
        return;
      }
      if (target.protocol !== 'http:' && target.protocol !== 'https:') {
        reject(new PagedlmError(`the hub redirected to ${target.protocol} URL ${target.href}; only http and https are followed`, 'ERR_HUB_PROTOCOL'));
        return;
      }
      const sent = { 'user-agent': 'pagedlm', ...headers };
      if (token && target.origin === tokenOrigin) sent.authorization = `Bearer ${token}`;
      const client = target.protocol === 'https:' ? https : http;
      const request = client.get(target, { headers: sent });
      let received = null;
      request.setTimeout(timeoutMs, () => {
        const error = networkError(target.href, `no data for ${timeoutMs} ms`);
        // The body's reader sees the connection close; this says why.
        if (received) received.hubError = error;
        request.destroy(error);
      });
      request.on('error', (error) => reject(error instanceof PagedlmError ? error : networkError(target.href, error.message, error)));
      request.once('response', (response) => {
        received = response;
        const status = response.statusCode;
        if ([301, 302, 303, 307, 308].includes(status)) {
          response.resume();
          const location = response.headers.location;
          if (!location) return reject(new PagedlmError(`${target.href} answered HTTP ${status} with no Location`, 'ERR_HUB_PROTOCOL'));
          if (hops >= maxRedirects) {
            return reject(new PagedlmError(`${url} redirected more than ${maxRedirects} times (a redirect loop?); gave up`, 'ERR_HUB_PROTOCOL'));
          }
          return visit(new URL(location, target).href, hops + 1);
        }
        if ((status >= 200 && status < 300) || acceptStatus.includes(status)) {
          response.url = target.href;
          return resolve(response);
        }
        response.resume();
        reject(statusError(url, status));
      });
    };
    visit(url, 0);
  });
}

/** GET `url` as JSON, refusing a body over `limit` bytes. Resolves to { body, headers }. */
async function getJson(url, options, limit = 64 * 1024 * 1024) {
  const response = await open(url, { ...options, headers: { accept: 'application/json' } });
  const chunks = [];
  let length = 0;
  await new Promise((resolve, reject) => {
    response.on('data', (chunk) => {
      length += chunk.length;
      if (length > limit) {
        response.destroy();
        reject(new PagedlmError(`${url} sent more than ${limit} bytes of listing; refused`, 'ERR_HUB_PROTOCOL'));
        return;
      }
      chunks.push(chunk);
    });
    response.once('end', resolve);
    response.once('error', (error) => reject(response.hubError ?? (error instanceof PagedlmError ? error : networkError(url, error.message, error))));
    response.once('aborted', () => reject(response.hubError ?? networkError(url, 'the connection closed before the listing ended')));
  });
  try {
    return { body: JSON.parse(Buffer.concat(chunks).toString('utf8')), headers: response.headers };
  } catch {
    throw new PagedlmError(`${url} did not answer with JSON`, 'ERR_HUB_PROTOCOL');
  }
}

module.exports = { open, getJson, networkError, DEFAULT_TIMEOUT_MS };
