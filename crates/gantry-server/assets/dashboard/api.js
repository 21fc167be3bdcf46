// Talking to the Gantry API: the bearer token (kept for this tab in sessionStorage), JSON calls
// that turn the API's error body into an exception naming the field, and the live event stream read
// with fetch() so that the Authorization header is sent.

const KEY = 'gantry.token';

/** The token of this tab, or null. */
export function token() {
  return sessionStorage.getItem(KEY);
}

/** Keeps `t` as this tab's token (null forgets it). */
export function setToken(t) {
  if (t) sessionStorage.setItem(KEY, t);
  else sessionStorage.removeItem(KEY);
}

/** An API error: HTTP status, the error code, message and the offending field. */
export class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field || null;
  }
}

function headers(extra) {
  const h = Object.assign({}, extra || {});
  const t = token();
  if (t) h.Authorization = 'Bearer ' + t;
  return h;
}

async function failure(resp) {
  let code = 'http_' + resp.status;
  let message = resp.statusText || ('HTTP ' + resp.status);
  let field = null;
  try {
    const body = await resp.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
      field = body.error.field || null;
    }
  } catch (_) { /* not JSON: keep the status text */ }
  return new ApiError(resp.status, code, message, field);
}

/** Sends a request; resolves to the Response when it is a 2xx, else throws an ApiError. */
export async function request(method, path, body, contentType) {
  const init = { method, headers: headers(contentType ? { 'Content-Type': contentType } : {}) };
  if (body !== undefined) init.body = body;
  const resp = await fetch(path, init);
  if (!resp.ok) throw await failure(resp);
  return resp;
}

/** GET a JSON document. */
export async function getJson(path) {
  return (await request('GET', path)).json();
}

/** Sends a JSON body, resolves to the JSON answer. */
export async function sendJson(method, path, value) {
  return (await request(method, path, JSON.stringify(value), 'application/json')).json();
}

/**
 * Reads `GET /api/events/stream` until it ends or `signal` aborts, calling `onEvent(name, data)` for
 * every server-sent event. Throws an ApiError when the server refuses the stream.
 */
export async function readStream(path, signal, onEvent) {
  const resp = await fetch(path, { headers: headers({ Accept: 'text/event-stream' }), signal, cache: 'no-store' });
  if (!resp.ok) throw await failure(resp);
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, '\n');
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let v = colon < 0 ? '' : line.slice(colon + 1);
        if (v.startsWith(' ')) v = v.slice(1);
        if (field === 'event') name = v;
        else if (field === 'data') data.push(v);
      }
      if (data.length) onEvent(name, data.join('\n'));
    }
  }
}
