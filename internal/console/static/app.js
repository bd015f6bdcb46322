// The console's entry point: hash routing between the pages, the login
// gate, and who this member is in the header.
//
// A route is #/<page>?<params>; each page module exports
// mount(root, params, ctx) and returns a function that stops whatever it
// started (timers, event streams). ctx.signal aborts the page's fetches
// when it goes; ctx.go(page, params) moves to another route.

import {api, credentials, onUnauthorized, setCredentials} from './api.js';
import * as overview from './overview.js';
import * as stores from './stores.js';
import * as live from './live.js';
import * as topology from './topology.js';
import * as config from './config.js';
import * as login from './login.js';
import {h, message} from './dom.js';

const pages = {overview, stores, live, topology, config};
const titles = {overview: 'Overview', stores: 'Stores', live: 'Live', topology: 'Topology', config: 'Config', login: 'Log in'};

const view = document.getElementById('view');
const logout = document.getElementById('logout');
const whoami = document.getElementById('whoami');

let current = null; // {unmount, abort} of the mounted page
let needLogin = false;

// route parses the hash: #/stores?store=s&key=k -> {name, params}.
function route() {
  const raw = location.hash.replace(/^#\/?/, '');
  const q = raw.indexOf('?');
  const name = (q < 0 ? raw : raw.slice(0, q)) || 'overview';
  return {name, params: new URLSearchParams(q < 0 ? '' : raw.slice(q + 1))};
}

// go moves to page with params; the same route again mounts it again.
function go(name, params = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, v);
  }
  const hash = `#/${name}${q.size ? '?' + q : ''}`;
  if (location.hash === hash) render();
  else location.hash = hash;
}

function unmount() {
  if (!current) return;
  current.abort.abort();
  try {
    current.unmount?.();
  } catch (e) {
    console.error(e);
  }
  current = null;
}

function render() {
  unmount();
  view.replaceChildren();
  delete view.dataset.loaded;
  const {name, params} = needLogin ? {name: 'login', params: new URLSearchParams()} : route();
  const page = needLogin ? login : pages[name];
  view.dataset.page = page ? name : 'missing';
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (a.dataset.nav === name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  document.title = `${titles[name] ?? 'Not found'} · abacus console`;
  logout.hidden = needLogin || !credentials();
  if (!page) {
    view.append(h('h1', {}, 'Not found'),
      message('error', `There is no page "${name}".`),
      h('p', {}, h('a', {href: '#/overview'}, 'Go to the overview')));
    return;
  }
  const abort = new AbortController();
  const ctx = {signal: abort.signal, go, loggedIn};
  current = {abort, unmount: page.mount(view, params, ctx)};
}

// identify shows who answers in the header.
async function identify() {
  try {
    const info = await api('streams');
    whoami.replaceChildren(
      h('span', {class: 'member', title: 'The member serving this console'}, info.instance),
      h('span', {class: 'muted'}, ` · ${info.application_id} · ${info.version}`));
  } catch {
    whoami.replaceChildren();
  }
}

// loggedIn leaves the login page for the route the user asked for.
function loggedIn() {
  needLogin = false;
  render();
  identify();
}

// A 401 drops the credentials, which the member no longer takes (none,
// wrong, or changed on the member), and asks for others.
onUnauthorized(() => {
  setCredentials(null);
  if (needLogin) return;
  needLogin = true;
  whoami.replaceChildren();
  render();
});

logout.addEventListener('click', () => {
  setCredentials(null);
  needLogin = true;
  whoami.replaceChildren();
  render();
});

window.addEventListener('hashchange', () => {
  if (!needLogin) render();
});

// The skip link moves the focus to the page without touching the route
// (a fragment is a route here).
document.querySelector('.skip').addEventListener('click', (e) => {
  e.preventDefault();
  view.focus();
});

render();
identify();
