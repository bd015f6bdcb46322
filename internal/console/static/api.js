// The API client: every call goes to the member that served the console
// (its /api/v1, resolved against the page at /), with the credentials of
// the login form.

const CREDENTIALS = 'abacus.console.credentials';

// ApiError is an answer other than 2xx, or no answer (status 0).
export class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

// credentials are {token} or {user, password}, kept in sessionStorage
// (this tab only, gone when it closes); null without any.
export function credentials() {
  try {
    return JSON.parse(sessionStorage.getItem(CREDENTIALS));
  } catch {
    return null;
  }
}

export function setCredentials(c) {
  if (c) sessionStorage.setItem(CREDENTIALS, JSON.stringify(c));
  else sessionStorage.removeItem(CREDENTIALS);
}

function authorization(c) {
  if (!c) return null;
  if (typeof c.token === 'string') return 'Bearer ' + c.token;
  if (typeof c.user === 'string') {
    const bytes = new TextEncoder().encode(`${c.user}:${c.password ?? ''}`);
    return 'Basic ' + btoa(String.fromCharCode(...bytes));
  }
  return null;
}

const unauthorizedListeners = new Set();

// onUnauthorized calls fn whenever the member answers 401.
export function onUnauthorized(fn) {
  unauthorizedListeners.add(fn);
}

// seg escapes a path segment (a store name, a key).
export function seg(v) {
  return encodeURIComponent(v);
}

// apiURL is the absolute URL of path under api/v1 with the params that
// are set (undefined, null and '' are left out).
export function apiURL(path, params = {}) {
  const u = new URL('api/v1/' + path, document.baseURI);
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') u.searchParams.set(k, String(v));
  }
  return u.toString();
}

// api calls path and returns the decoded JSON body. A 401 tells the
// onUnauthorized listeners (unless quiet401) and throws like any error.
export async function api(path, {params, method = 'GET', signal, quiet401 = false} = {}) {
  const headers = {Accept: 'application/json'};
  const auth = authorization(credentials());
  if (auth) headers.Authorization = auth;
  let resp;
  try {
    // credentials: 'omit' keeps the browser from prompting for basic
    // auth on a 401: the console's own login form asks instead.
    resp = await fetch(apiURL(path, params), {method, headers, signal, credentials: 'omit', cache: 'no-store'});
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'unreachable', `the member did not answer (${e.message})`);
  }
  const text = await resp.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (resp.ok) return body;
  const code = body?.error?.code ?? `http_${resp.status}`;
  const msg = body?.error?.message ?? (text.trim() || resp.statusText);
  const err = new ApiError(resp.status, code, msg, resp.headers.get('Retry-After'));
  // A 401 to credentials since replaced (a call still in flight when the
  // user logged in) says nothing of the current ones.
  if (resp.status === 401 && !quiet401 && authorization(credentials()) === auth) {
    for (const fn of unauthorizedListeners) fn(err);
  }
  throw err;
}

// describe is an error as a line for people.
export function describe(err) {
  if (err instanceof ApiError) {
    const status = err.status ? `${err.status} ${err.code}` : err.code;
    const retry = err.retryAfter ? ` (retry after ${err.retryAfter} s)` : '';
    return `${status}: ${err.message}${retry}`;
  }
  return String(err?.message ?? err);
}

// stores lists the stores with their type: count for the count store
// (which has none in /api/v1/stores), else the window type.
export async function stores(signal) {
  const body = await api('stores', {signal});
  return (body?.stores ?? []).map((st) => ({...st, type: st.type ?? 'count'}));
}
