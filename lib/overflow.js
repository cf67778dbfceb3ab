'use strict';
// contextOverflow: what chat() and the router do with a conversation longer than the context.
//   'error'           the request fails with ERR_CONTEXT_OVERFLOW (the router answers 400 context_length_exceeded).
//   'truncate-oldest' the leading system and developer messages stay; the oldest turns are dropped, whole.
// A turn is a user message and everything up to the next user message (the assistant's replies, its tool
// calls and their results), so what is kept never starts with a reply or holds a tool result without its call.
//
// Where to cut uses hysteresis, for the prefix cache: when the conversation outgrows the prompt budget, the
// oldest turns go until what is kept fits half the budget; the requests after it extend that same prompt
// (hitting its cached blocks) until it outgrows the budget again. A cut that moved by one turn per request
// would change the prompt right after the system messages every time, and only they would hit.
// The cut depends on the messages alone (with the template, the tools and the budget): it replays the
// conversation's growth request by request from its start, so a stateless caller sent the whole history
// each time (the router) gets the cut its previous request got. Token counts come from the real rendering
// and tokenizer; the replay measures O(log n) candidate prompts per cut, not every prefix.
const { PagedlmError } = require('./errors');

/**
 * Tokens kept free for the reply when a conversation is truncated: maxTokens, but at most a quarter of the
 * context, so that a large maxTokens does not leave room for nothing but the newest turn.
 */
function replyReserve(contextLength, maxTokens) {
  return Math.max(1, Math.min(maxTokens, Math.floor(contextLength / 4)));
}

const isInstruction = (m) => m !== null && typeof m === 'object' && (m.role === 'system' || m.role === 'developer');

// The prefixes of the conversation a caller sends as requests: each ends with a user or tool message (the
// model answers those), and the whole conversation is one whatever it ends with. Offsets into `body`.
function requestEnds(body) {
  const ends = [];
  body.forEach((m, i) => {
    if (m.role === 'user' || m.role === 'tool') ends.push(i + 1);
  });
  if (ends[ends.length - 1] !== body.length) ends.push(body.length);
  return ends;
}

// Where a turn may be cut from: before each user message.
function turnStarts(body) {
  const starts = [];
  body.forEach((m, i) => {
    if (m.role === 'user') starts.push(i);
  });
  return starts;
}

// The first index from `from` on whose item `overflows` (list.length when none does), given that
// overflowing is monotone: galloping from `from`, then bisecting, so a long history costs a few probes, each
// of a prompt not much longer than the one that overflows.
function firstOverflowing(list, from, overflows) {
  const last = list.length - 1;
  if (from > last) return list.length;
  let fits = from - 1;
  let over = from;
  for (let step = 1; !overflows(list[over]); step *= 2) {
    if (over === last) return list.length;
    fits = over;
    over = Math.min(last, over + step);
  }
  while (over - fits > 1) {
    const mid = (fits + over) >> 1;
    if (overflows(list[mid])) over = mid;
    else fits = mid;
  }
  return over;
}

// The earliest of `starts` whose kept part fits `fits`; the last one when none does.
function earliestFitting(starts, fits) {
  let low = 0;
  let high = starts.length - 1;
  if (!fits(starts[high])) return starts[high];
  while (low < high) {
    const mid = (low + high) >> 1;
    if (fits(starts[mid])) high = mid;
    else low = mid + 1;
  }
  return starts[low];
}

function overflowError(tokens, promptLimit, what) {
  const verb = what === 'the newest turn' ? 'takes' : 'take';
  return new PagedlmError(
    `${what} alone ${verb} ${tokens} tokens, more than the ${promptLimit} a prompt may have here (the context less the room kept for the reply): shorten it, lower maxTokens, or load with a larger contextLength`,
    'ERR_CONTEXT_OVERFLOW',
  );
}

/**
 * 'truncate-oldest' for `messages` (already checked). `measure(messages)` renders and tokenizes a candidate
 * prompt and returns an object with its `tokens`; `promptLimit` is the most tokens the prompt may have.
 * -> { messages: those kept, truncatedMessages: how many were dropped, measured: measure() of the kept ones }.
 * Throws ERR_CONTEXT_OVERFLOW when the system messages and the newest turn alone do not fit.
 */
function truncateOldest(messages, { measure, promptLimit }) {
  let headLength = 0;
  while (headLength < messages.length && isInstruction(messages[headLength])) headLength++;
  const head = messages.slice(0, headLength);
  const body = messages.slice(headLength);
  const memo = new Map();
  const measured = (cut, end) => {
    const key = cut * (body.length + 1) + end;
    if (!memo.has(key)) memo.set(key, measure([...head, ...body.slice(cut, end)]));
    return memo.get(key);
  };
  const tokens = (cut, end) => measured(cut, end).tokens;
  const whole = body.length;
  const keep = (cut) => ({ messages: [...head, ...body.slice(cut)], truncatedMessages: cut, measured: measured(cut, whole) });

  if (tokens(0, whole) <= promptLimit) return keep(0);
  const what = head.length ? 'the system messages and the newest turn' : 'the newest turn';
  if (whole === 0) throw overflowError(tokens(0, whole), promptLimit, 'the system messages');
  const ends = requestEnds(body);
  const starts = turnStarts(body);
  const target = Math.floor(promptLimit / 2);
  let cut = 0;
  let next = 0; // the requests before it are replayed
  for (;;) {
    const over = firstOverflowing(ends, next, (end) => tokens(cut, end) > promptLimit);
    if (over === ends.length) return keep(cut);
    const end = ends[over];
    const candidates = starts.filter((start) => start > cut && start < end);
    if (candidates.length > 0) cut = earliestFitting(candidates, (start) => tokens(start, end) <= target);
    if (end === whole) {
      // The newest request: nothing later can move the cut.
      if (tokens(cut, whole) > promptLimit) throw overflowError(tokens(cut, whole), promptLimit, what);
      return keep(cut);
    }
    next = over + 1;
  }
}

module.exports = { replyReserve, truncateOldest };
