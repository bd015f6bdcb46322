// The config page: the effective configuration of the member serving the
// console (GET /api/v1/streams/config, secrets masked by the member), one
// row a setting with its environment variable, filterable.

import {api, describe} from './api.js';
import {field, h, message} from './dom.js';

// rows flattens the config: each setting, then each Kafka property.
export function rows(cfg) {
  const out = [];
  for (const name of Object.keys(cfg).sort()) {
    if (name === 'kafka' && cfg.kafka && typeof cfg.kafka === 'object') continue;
    out.push({name, env: 'ABACUS_' + name.toUpperCase(), value: cfg[name]});
  }
  for (const prop of Object.keys(cfg.kafka ?? {}).sort()) {
    out.push({name: `kafka: ${prop}`, env: 'ABACUS_KAFKA_' + prop.toUpperCase().replace(/\./g, '_'), value: cfg.kafka[prop]});
  }
  return out;
}

function shown(v) {
  if (v === '') return h('span', {class: 'muted'}, '(empty)');
  if (v === '********') return h('span', {class: 'masked', title: 'a secret, masked by the member'}, v);
  if (typeof v === 'object' && v !== null) return JSON.stringify(v);
  return String(v);
}

export function mount(root, params, ctx) {
  const filter = h('input', {type: 'search', id: 'config-filter', name: 'filter', spellcheck: 'false', value: params.get('filter') ?? ''});
  const body = h('tbody');
  const out = h('div', {id: 'config-status'}, h('p', {class: 'muted'}, 'Loading…'));
  root.append(
    h('div', {class: 'page-head'}, h('h1', {}, 'Config'), h('p', {class: 'muted', id: 'config-member'})),
    h('form', {class: 'inline', onsubmit: (e) => e.preventDefault()}, field('Filter', filter, 'by name, variable or value')),
    out,
    h('table', {id: 'config'},
      h('caption', {}, 'Effective configuration'),
      h('thead', {}, h('tr', {}, h('th', {scope: 'col'}, 'Setting'), h('th', {scope: 'col'}, 'Variable'), h('th', {scope: 'col'}, 'Value'))),
      body));

  let all = [];
  const apply = () => {
    const f = filter.value.trim().toLowerCase();
    for (const tr of body.children) {
      tr.hidden = f !== '' && !tr.dataset.text.includes(f);
    }
  };
  filter.addEventListener('input', apply);

  api('streams/config', {signal: ctx.signal}).then((cfg) => {
    all = rows(cfg);
    body.replaceChildren(...all.map((r) => h('tr', {data: {setting: r.name, text: `${r.name} ${r.env} ${r.value}`.toLowerCase()}},
      h('th', {scope: 'row', class: 'mono'}, r.name),
      h('td', {class: 'mono muted'}, r.env),
      h('td', {class: 'mono value'}, shown(r.value)))));
    out.replaceChildren();
    document.getElementById('config-member').textContent =
      `As ${cfg.instance_id || 'this member'} runs with it: defaults, file, environment and flags applied; secrets masked.`;
    apply();
    root.dataset.loaded = 'true';
  }, (err) => {
    if (err.name !== 'AbortError' && err.status !== 401) {
      out.replaceChildren(message('error', `The configuration could not be read: ${describe(err)}`));
    }
  });
  return () => {};
}
