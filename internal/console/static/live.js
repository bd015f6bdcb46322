// The live page: follow a key, or every key with a prefix, through a
// subscription (Server-Sent Events), as a table of key -> count whose
// changed rows light up briefly.
//
// EventSource cannot send an Authorization header, so each connection
// first asks POST /api/v1/tickets for a short-lived ticket and passes it
// as ?ticket=. On an error the stream is closed and opened again with a
// fresh ticket and ?last_event_id= (the last event's id), after a backoff
// of 1 s doubling up to 15 s.
//
// Deep links: #/live?key=K, #/live?prefix=P, with &store=S.

import {api, apiURL, describe, seg, stores as listStores} from './api.js';
import {clock, field, h, message, num, time} from './dom.js';

const FLASH = 1500;
// MAX_ROWS bounds the table: a prefix of many keys (the empty prefix of a
// large store) shows its first MAX_ROWS keys to arrive, and counts the
// others.
const MAX_ROWS = 1000;

export function mount(root, params, ctx) {
  const picker = h('select', {name: 'store', id: 'live-store'});
  const prefixed = params.has('prefix') || params.has('all');
  const byKey = h('input', {type: 'radio', name: 'mode', value: 'key', checked: !prefixed});
  const byPrefix = h('input', {type: 'radio', name: 'mode', value: 'prefix', checked: prefixed});
  const text = h('input', {name: 'q', id: 'live-q', spellcheck: 'false', value: params.get('prefix') ?? params.get('key') ?? ''});
  const stop = h('button', {type: 'button', class: 'secondary', id: 'live-stop', disabled: true}, 'Stop');
  const form = h('form', {id: 'live-form', class: 'inline'},
    field('Store', picker),
    h('fieldset', {class: 'choice'}, h('legend', {}, 'Follow'),
      h('label', {}, byKey, ' a key'), h('label', {}, byPrefix, ' a prefix')),
    field('Key or prefix', text),
    h('button', {type: 'submit'}, 'Subscribe'), stop);
  const status = h('div', {id: 'live-status', class: 'muted', 'aria-live': 'polite', data: {state: 'idle'}}, 'Not subscribed.');
  const body = h('tbody');
  const tableHead = h('thead');
  const results = h('table', {id: 'live-table'}, h('caption', {}, 'Counts'), tableHead, body);
  root.append(h('div', {class: 'page-head'}, h('h1', {}, 'Live')), form,
    h('p', {class: 'muted hint-line'}, 'A key\'s stream opens with its current count (0 for a key never counted); ' +
      'a prefix\'s with the counts of its keys (an empty prefix follows every key). Changed rows light up.'),
    status, results);

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const p = {store: picker.value};
    if (byPrefix.checked) p.prefix = text.value;
    else p.key = text.value;
    if (!byPrefix.checked && !text.value) {
      status.replaceChildren(message('error', 'Enter a key to follow.'));
      text.focus();
      return;
    }
    // An empty prefix is a subscription too; ctx.go drops empty values.
    ctx.go('live', byPrefix.checked && !text.value ? {...p, prefix: '', all: '1'} : p);
  });

  let follow = null;
  stop.addEventListener('click', () => {
    follow?.close();
    follow = null;
    stop.disabled = true;
    setStatus(status, 'idle', 'Stopped.');
  });

  listStores(ctx.signal).then((list) => {
    picker.replaceChildren(...list.map((st) => h('option', {value: st.name},
      st.type === 'count' ? st.name : `${st.name} (${st.type})`)));
    const wanted = params.get('store');
    if (wanted && !list.some((st) => st.name === wanted)) {
      status.replaceChildren(message('error', `There is no store "${wanted}".`));
      return;
    }
    picker.value = wanted || list[0]?.name || '';
    const st = list.find((x) => x.name === picker.value);
    const windowed = st && st.type !== 'count';
    tableHead.replaceChildren(h('tr', {}, (windowed ? ['Key', 'Window start', 'Window end', 'Count', 'Updated'] : ['Key', 'Count', 'Partition', 'Updated'])
      .map((t) => h('th', {scope: 'col', class: t === 'Count' || t === 'Partition' ? 'num' : ''}, t))));
    root.dataset.loaded = 'true';
    const q = params.has('key') ? {key: params.get('key')} : prefixed ? {prefix: params.get('prefix') ?? ''} : null;
    if (!st || !q) return;
    follow = subscribe(st, q, {status, body, windowed, signal: ctx.signal});
    stop.disabled = false;
  }, (err) => {
    if (err.name !== 'AbortError' && err.status !== 401) {
      status.replaceChildren(message('error', `The stores could not be listed: ${describe(err)}`));
    }
  });
  return () => follow?.close();
}

function setStatus(el, state, text) {
  el.dataset.state = state;
  el.replaceChildren(text);
}

// subscribe follows q ({key} or {prefix}) of store st into the table body
// and returns {close}.
function subscribe(st, q, {status, body, windowed, signal}) {
  const rows = new Map(); // row id -> <tr>
  const order = []; // the row ids, sorted
  const left = new Set(); // ids of the keys left out beyond MAX_ROWS
  let es = null;
  let lastId = '';
  let events = 0;
  let backoff = 1000;
  let timer = 0;
  let closed = false;
  const what = q.key !== undefined ? `key "${q.key}"` : q.prefix ? `prefix "${q.prefix}"` : 'every key';

  const show = (state, text) => setStatus(status, state, `${text} · ${num(events)} events` +
    (left.size ? ` · ${num(left.size)} more keys not shown (at most ${num(MAX_ROWS)} rows)` : ''));

  // place inserts a row in key order (then window start).
  const place = (id, tr) => {
    let lo = 0;
    let hi = order.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (order[mid] < id) lo = mid + 1;
      else hi = mid;
    }
    body.insertBefore(tr, lo < order.length ? rows.get(order[lo]) : null);
    order.splice(lo, 0, id);
    rows.set(id, tr);
  };
  const remove = (id) => {
    rows.get(id)?.remove();
    rows.delete(id);
    const i = order.indexOf(id);
    if (i >= 0) order.splice(i, 1);
  };

  const flash = (tr) => {
    tr.classList.remove('flash');
    void tr.offsetWidth; // restart the animation
    tr.classList.add('flash');
    clearTimeout(tr.flashTimer);
    tr.flashTimer = setTimeout(() => tr.classList.remove('flash'), FLASH);
  };

  // apply shows an event. A row lights up when its count changes, or when
  // it comes with an update (an event with an id), not with the current
  // values a prefix's stream opens with.
  const apply = (ev, update) => {
    const id = windowed ? `${ev.key}\u0000${String(ev.start).padStart(16, '0')}\u0000${ev.end}` : ev.key;
    const now = clock();
    let tr = rows.get(id);
    if (windowed && ev.value === null) { // a retraction: the window is gone
      remove(id);
      left.delete(id);
      return;
    }
    if (!tr && rows.size >= MAX_ROWS) {
      left.add(id);
      return;
    }
    if (tr && Number(tr.dataset.value) === ev.value) return;
    const cells = windowed
      ? [h('td', {class: 'mono'}, ev.key), h('td', {class: 'when'}, time(ev.start)), h('td', {class: 'when'}, time(ev.end)),
        h('td', {class: 'num', data: {field: 'value'}}, num(ev.value)), h('td', {class: 'muted'}, now)]
      : [h('td', {class: 'mono'}, ev.key), h('td', {class: 'num', data: {field: 'value'}}, num(ev.value)),
        h('td', {class: 'num'}, ev.partition), h('td', {class: 'muted'}, now)];
    const changed = Boolean(tr) || update;
    if (!tr) {
      tr = h('tr', {data: {key: ev.key, value: ev.value}});
      tr.replaceChildren(...cells);
      place(id, tr);
    } else {
      tr.dataset.value = String(ev.value);
      tr.replaceChildren(...cells);
    }
    if (windowed) tr.dataset.start = String(ev.start);
    if (changed) flash(tr);
  };

  const retry = (why) => {
    es?.close();
    es = null;
    if (closed) return;
    show('reconnecting', `${why}; reconnecting in ${backoff / 1000} s`);
    timer = setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, 15000);
  };

  async function connect() {
    if (closed) return;
    show('connecting', `Connecting to ${what}…`);
    let ticket;
    try {
      ticket = (await api('tickets', {method: 'POST', signal})).ticket;
    } catch (err) {
      if (err.name === 'AbortError' || closed) return;
      if (err.status === 401) {
        close();
        return; // the login page takes over
      }
      retry(`No ticket: ${describe(err)}`);
      return;
    }
    if (closed) return;
    const url = apiURL(`stores/${seg(st.name)}/subscribe`, {...q, ticket, last_event_id: lastId});
    es = new EventSource(url);
    es.addEventListener('open', () => {
      backoff = 1000;
      show('open', `Following ${what} in ${st.name} since ${clock()}`);
    });
    es.addEventListener('count', (e) => {
      if (e.lastEventId) lastId = e.lastEventId;
      events++;
      try {
        apply(JSON.parse(e.data), e.lastEventId !== '');
      } catch (err) {
        console.error('bad event', e.data, err);
      }
      show('open', `Following ${what} in ${st.name}; last event ${clock()}`);
    });
    es.addEventListener('moved', () => retry('The partition moved'));
    es.addEventListener('error', (e) => {
      let why = 'The stream broke';
      if (e.data) { // an event: error of the server, with its JSON error
        try {
          why = JSON.parse(e.data)?.error?.message ?? why;
        } catch { /* keep the plain reason */ }
      }
      retry(why);
    });
  }

  function close() {
    closed = true;
    clearTimeout(timer);
    es?.close();
    es = null;
  }

  connect();
  return {close};
}
