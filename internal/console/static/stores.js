// The stores page: pick a store, look a key up (its count, partition and
// the member that served it; a windowed store's windows of the key), and
// scan keys by prefix or range, page by page.
//
// Deep links: #/stores?store=S&key=K looks K up, &prefix=P or &from=A&to=B
// scans (&limit=N), as the forms do.

import {api, ApiError, describe, seg, stores as listStores} from './api.js';
import {field, h, message, num, time} from './dom.js';

export function mount(root, params, ctx) {
  const picker = h('select', {name: 'store', id: 'store-select'});
  const pickStatus = h('span', {class: 'muted'});
  const lookupBox = h('section', {class: 'card', id: 'lookup-section'});
  const scanBox = h('section', {class: 'card', id: 'scan-section'});
  root.append(
    h('div', {class: 'page-head'}, h('h1', {}, 'Stores')),
    h('form', {class: 'inline', id: 'store-form', onsubmit: (e) => e.preventDefault()},
      field('Store', picker), pickStatus),
    h('div', {class: 'two'}, lookupBox, scanBox));

  let all = [];
  const store = () => all.find((st) => st.name === picker.value);
  // go keeps the other form's part of the route: a scan keeps the key
  // looked up, a lookup keeps the scan.
  const go = (p, drop = []) => {
    const keep = Object.fromEntries([...params].filter(([k]) => !drop.includes(k)));
    ctx.go('stores', {...keep, store: picker.value, ...p});
  };
  picker.addEventListener('change', () => ctx.go('stores', {store: picker.value}));

  listStores(ctx.signal).then((list) => {
    all = list;
    picker.replaceChildren(...list.map((st) => h('option', {value: st.name},
      st.type === 'count' ? st.name : `${st.name} (${st.type})`)));
    const wanted = params.get('store');
    if (wanted && !list.some((st) => st.name === wanted)) {
      lookupBox.replaceChildren(message('error', `There is no store "${wanted}".`));
      return;
    }
    picker.value = wanted || list[0]?.name || '';
    const st = store();
    if (!st) {
      lookupBox.replaceChildren(message('error', 'The member lists no store.'));
      return;
    }
    pickStatus.textContent = st.type === 'count'
      ? `count store, changelog ${st.changelog ?? ''}`
      : `${st.type} windows of ${st.size}${st.advance && st.advance !== st.size ? ` every ${st.advance}` : ''}, emit ${st.emit}`;
    lookup(lookupBox, st, params, ctx, go);
    scan(scanBox, st, params, ctx, go);
    root.dataset.loaded = 'true';
  }, (err) => {
    if (err.name !== 'AbortError' && err.status !== 401) {
      lookupBox.replaceChildren(message('error', `The stores could not be listed: ${describe(err)}`));
    }
  });
  return () => {};
}

// toMs reads a datetime-local input as epoch ms ('' when empty).
const toMs = (v) => (v ? String(new Date(v).getTime()) : '');
// fromMs is the datetime-local form of epoch ms.
const fromMs = (v) => {
  if (!v) return '';
  const d = new Date(Number(v));
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 19);
};

function lookup(box, st, params, ctx, go) {
  const windowed = st.type !== 'count';
  const key = h('input', {name: 'key', id: 'lookup-key', required: true, spellcheck: 'false', value: params.get('key') ?? ''});
  const from = h('input', {type: 'datetime-local', step: 1, name: 'wfrom', id: 'lookup-from', value: fromMs(params.get('wfrom'))});
  const to = h('input', {type: 'datetime-local', step: 1, name: 'wto', id: 'lookup-to', value: fromMs(params.get('wto'))});
  const result = h('div', {id: 'lookup-result', 'aria-live': 'polite'});
  const form = h('form', {id: 'lookup-form', class: 'inline'},
    field('Key', key),
    windowed ? [field('Windows from', from), field('to', to)] : null,
    h('button', {type: 'submit'}, windowed ? 'Show windows' : 'Look up'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    go({key: key.value, wfrom: windowed ? toMs(from.value) : '', wto: windowed ? toMs(to.value) : ''});
  });
  box.replaceChildren(h('h2', {}, windowed ? 'Windows of a key' : 'Look up a key'), form, result);
  const k = params.get('key');
  if (!k) return;
  result.replaceChildren(message('info', 'Looking up…'));
  const path = `stores/${seg(st.name)}/keys/${seg(k)}`;
  if (!windowed) {
    api(path, {signal: ctx.signal}).then((r) => {
      result.replaceChildren(h('dl', {class: 'facts', data: {key: r.key, value: r.value, partition: r.partition, servedBy: r.served_by}},
        h('dt', {}, 'Key'), h('dd', {class: 'mono'}, r.key),
        h('dt', {}, 'Count'), h('dd', {class: 'big', data: {field: 'value'}}, num(r.value)),
        h('dt', {}, 'Partition'), h('dd', {data: {field: 'partition'}}, r.partition),
        h('dt', {}, 'Served by'), h('dd', {data: {field: 'served-by'}}, r.served_by)));
    }, (err) => failed(result, err, k));
    return;
  }
  api(path + '/windows', {signal: ctx.signal, params: {from: params.get('wfrom'), to: params.get('wto')}}).then((r) => {
    const rows = r.windows.map((w) => h('tr', {data: {start: w.start, end: w.end, value: w.value}},
      h('td', {class: 'when'}, time(w.start)), h('td', {class: 'when'}, time(w.end)), h('td', {class: 'num'}, num(w.value))));
    result.replaceChildren(
      h('p', {data: {key: r.key, partition: r.partition, servedBy: r.served_by}},
        `Key `, h('span', {class: 'mono'}, r.key), `, partition ${r.partition}, served by ${r.served_by}: ${r.windows.length} ${r.windows.length === 1 ? 'window' : 'windows'}.`),
      rows.length ? h('table', {id: 'windows'},
        h('thead', {}, h('tr', {}, h('th', {scope: 'col'}, 'Start'), h('th', {scope: 'col'}, 'End'), h('th', {scope: 'col', class: 'num'}, 'Count'))),
        h('tbody', {}, rows)) : null);
  }, (err) => failed(result, err, k));
}

function failed(box, err, key) {
  if (err.name === 'AbortError' || err.status === 401) return;
  if (err instanceof ApiError && err.code === 'key_not_found') {
    box.replaceChildren(message('info', `"${key}" has no count: no record with this key has been counted.`));
    return;
  }
  box.replaceChildren(message('error', describe(err)));
}

function scan(box, st, params, ctx, go) {
  const windowed = st.type !== 'count';
  const mode = params.has('from') || params.has('to') ? 'range' : 'prefix';
  const byPrefix = h('input', {type: 'radio', name: 'mode', value: 'prefix', checked: mode === 'prefix'});
  const byRange = h('input', {type: 'radio', name: 'mode', value: 'range', checked: mode === 'range'});
  const prefix = h('input', {name: 'prefix', id: 'scan-prefix', spellcheck: 'false', value: params.get('prefix') ?? ''});
  const from = h('input', {name: 'from', id: 'scan-from', spellcheck: 'false', value: params.get('from') ?? ''});
  const to = h('input', {name: 'to', id: 'scan-to', spellcheck: 'false', value: params.get('to') ?? ''});
  const limit = h('input', {type: 'number', name: 'limit', id: 'scan-limit', min: 1, max: 1000, value: params.get('limit') ?? '20'});
  const prefixFields = h('div', {class: 'inline'}, field('Prefix', prefix, 'empty: every key'));
  const rangeFields = h('div', {class: 'inline'}, field('From key', from, 'inclusive'), field('To key', to, 'exclusive'));
  const sync = () => {
    prefixFields.hidden = !byPrefix.checked;
    rangeFields.hidden = byPrefix.checked;
  };
  byPrefix.addEventListener('change', sync);
  byRange.addEventListener('change', sync);
  sync();
  const form = h('form', {id: 'scan-form'},
    h('fieldset', {class: 'choice'}, h('legend', {}, 'Scan by'),
      h('label', {}, byPrefix, ' prefix'), h('label', {}, byRange, ' key range')),
    prefixFields, rangeFields,
    h('div', {class: 'inline'}, field('Page size', limit), h('button', {type: 'submit'}, 'Scan')));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    go(byPrefix.checked
      ? {prefix: prefix.value, scan: '1', limit: limit.value}
      : {from: from.value, to: to.value, scan: '1', limit: limit.value}, ['prefix', 'from', 'to']);
  });
  const status = h('div', {id: 'scan-status', 'aria-live': 'polite'});
  const body = h('tbody');
  const prev = h('button', {type: 'button', class: 'secondary', id: 'scan-prev', disabled: true}, '← Previous');
  const next = h('button', {type: 'button', class: 'secondary', id: 'scan-next', disabled: true}, 'Next →');
  const pageNo = h('span', {class: 'muted', id: 'scan-page'});
  const heads = windowed ? ['Key', 'Start', 'End', 'Count'] : ['Key', 'Count', 'Partition'];
  const results = h('table', {id: 'scan-results', hidden: true},
    h('thead', {}, h('tr', {}, heads.map((t) => h('th', {scope: 'col', class: t === 'Key' || t === 'Start' || t === 'End' ? '' : 'num'}, t)))),
    body);
  box.replaceChildren(h('h2', {}, windowed ? 'Scan windows' : 'Scan keys'), form, status, results,
    h('div', {class: 'pager'}, prev, pageNo, next));

  if (!params.has('scan') && !params.has('prefix') && !params.has('from') && !params.has('to')) return;
  results.hidden = true;
  const query = byPrefix.checked ? {prefix: params.get('prefix') ?? ''} : windowed
    ? {from_key: params.get('from'), to_key: params.get('to')}
    : {from: params.get('from'), to: params.get('to')};
  query.limit = params.get('limit') || '20';
  const path = windowed ? `stores/${seg(st.name)}/windows` : `stores/${seg(st.name)}/keys`;
  // cursors[i] is the cursor of page i+1 (page 1 has none).
  const cursors = [''];
  let page = 0;
  let busy = false;
  const load = async (n) => {
    if (busy) return;
    busy = true;
    prev.disabled = next.disabled = true;
    status.replaceChildren(message('info', 'Scanning…'));
    try {
      const r = await api(path, {signal: ctx.signal, params: {...query, cursor: cursors[n]}});
      page = n;
      if (r.next_cursor) cursors[n + 1] = r.next_cursor;
      else cursors.length = n + 1;
      body.replaceChildren(...r.items.map((it) => windowed
        ? h('tr', {data: {key: it.key, start: it.start, value: it.value}},
          h('td', {class: 'mono'}, it.key), h('td', {class: 'when'}, time(it.start)), h('td', {class: 'when'}, time(it.end)), h('td', {class: 'num'}, num(it.value)))
        : h('tr', {data: {key: it.key, value: it.value, partition: it.partition}},
          h('td', {class: 'mono'}, it.key), h('td', {class: 'num'}, num(it.value)), h('td', {class: 'num'}, it.partition))));
      results.hidden = r.items.length === 0;
      status.replaceChildren(r.items.length ? [] : message('info', 'No key matches.'));
      pageNo.textContent = `page ${n + 1}${r.next_cursor ? '' : ' (last)'}`;
      prev.disabled = n === 0;
      next.disabled = !r.next_cursor;
    } catch (err) {
      if (err.name === 'AbortError' || err.status === 401) return;
      status.replaceChildren(message('error', describe(err)));
      prev.disabled = page === 0;
      next.disabled = !cursors[page + 1];
    } finally {
      busy = false;
    }
  };
  prev.addEventListener('click', () => load(page - 1));
  next.addEventListener('click', () => load(page + 1));
  load(0);
}
