// The topology page: GET /api/v1/streams/topology drawn as a diagram,
// input topic -> source -> each processor -> its store -> the store's
// changelog, and its sink -> output topic; failed records -> the
// dead-letter topic. Each node's description is its tooltip and is listed
// under the diagram.

import {api, describe} from './api.js';
import {h, message, s} from './dom.js';

const CHAR = 7.3; // px per character of the 12px monospace labels
const BOX_H = 40;
const ROW = 58;
const GAP = 56;

// storeOf names the store a processor or sink belongs to: the store its
// description names ("... in store X"), else the suffix of its name after
// the prefix, else null.
function storeOf(node, prefix, storeNames) {
  const m = /in store ([^\s;,]+)/.exec(node.description ?? '');
  if (m && storeNames.includes(m[1])) return m[1];
  if (node.name.startsWith(prefix) && storeNames.includes(node.name.slice(prefix.length))) return node.name.slice(prefix.length);
  return null;
}

// layout places the nodes in five columns and lists the edges.
export function layout(t) {
  const storeNames = (t.stores ?? []).map((st) => st.name);
  const nodes = [];
  const edges = [];
  const add = (col, row, kind, label, sub, description) => {
    const n = {col, row, kind, label, sub, description};
    nodes.push(n);
    return n;
  };
  let row = 0;
  const srcTopic = add(0, 0, 'topic', t.source?.topic ?? '?', 'input topic', 'The input topic');
  const source = add(1, 0, 'source', t.source?.name ?? 'source', 'source', t.source?.description);
  edges.push([srcTopic, source]);
  const sinks = [...(t.sinks ?? [])];
  const dlqSinks = sinks.filter((k) => /dlq|dead/i.test(k.name + ' ' + (k.topic ?? '')));
  const procs = t.processors ?? [];
  const procNodes = [];
  for (const [i, p] of procs.entries()) {
    const storeName = storeOf(p, 'count-by-window-', storeNames) ?? storeOf(p, 'count-by-', storeNames) ?? storeNames[i];
    const pn = add(2, row, 'processor', p.name, 'processor', p.description);
    procNodes.push(pn);
    edges.push([source, pn]);
    const st = (t.stores ?? []).find((x) => x.name === storeName);
    if (st) {
      const sn = add(3, row, 'store', st.name, 'state store', st.description);
      edges.push([pn, sn]);
      if (st.changelog) edges.push([sn, add(4, row, 'changelog', st.changelog, 'changelog topic', `The compacted changelog of ${st.name}`)]);
    }
    // This processor's sinks: the sink naming its store, or, for the
    // first (the count) processor, the plain output sink.
    const mine = sinks.filter((k) => !dlqSinks.includes(k) &&
      (storeOf(k, 'output-', storeNames) === storeName || (i === 0 && storeOf(k, 'output-', storeNames) === null)));
    for (const k of mine) {
      row++;
      const kn = add(3, row, 'sink', k.name, 'sink', k.description);
      edges.push([pn, kn]);
      if (k.topic) edges.push([kn, add(4, row, 'topic', k.topic, 'output topic', k.description)]);
      sinks.splice(sinks.indexOf(k), 1);
    }
    row++;
  }
  for (const k of sinks.filter((x) => !dlqSinks.includes(x))) { // sinks of no processor
    const kn = add(3, row, 'sink', k.name, 'sink', k.description);
    edges.push([procNodes[0] ?? source, kn]);
    if (k.topic) edges.push([kn, add(4, row, 'topic', k.topic, 'output topic', k.description)]);
    row++;
  }
  for (const k of dlqSinks) {
    const kn = add(3, row, 'sink dlq', k.name, 'dead-letter sink', k.description);
    for (const pn of procNodes.length ? procNodes : [source]) edges.push([pn, kn, 'failed']);
    if (k.topic) edges.push([kn, add(4, row, 'topic dlq', k.topic, 'dead-letter topic', k.description)]);
    row++;
  }
  return {nodes, edges, rows: Math.max(row, 1)};
}

function draw({nodes, edges, rows}) {
  const widths = [0, 0, 0, 0, 0];
  for (const n of nodes) widths[n.col] = Math.max(widths[n.col], Math.max(n.label.length, n.sub.length) * CHAR + 24);
  const xs = [];
  let x = 8;
  for (const w of widths) {
    xs.push(x);
    x += w + GAP;
  }
  const width = x - GAP + 8;
  const height = 8 + (rows - 1) * ROW + BOX_H + 8;
  const box = (n) => ({x: xs[n.col], y: 8 + n.row * ROW, w: widths[n.col], h: BOX_H});
  const svg = s('svg', {id: 'topology-diagram', class: 'topology', viewBox: `0 0 ${width} ${height}`, width, height, role: 'img',
    'aria-label': `Topology: ${nodes.map((n) => `${n.sub} ${n.label}`).join(', ')}`},
  s('defs', {}, s('marker', {id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse'},
    s('path', {class: 'arrowhead', d: 'M0,0 L10,5 L0,10 z'}))));
  for (const [a, b, kind] of edges) {
    const p = box(a);
    const q = box(b);
    const x1 = p.x + p.w;
    const y1 = p.y + p.h / 2;
    const x2 = q.x;
    const y2 = q.y + q.h / 2;
    const mid = (x1 + x2) / 2;
    svg.append(s('path', {class: `edge ${kind ?? ''}`, 'marker-end': 'url(#arrow)',
      d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`}));
  }
  for (const n of nodes) {
    const b = box(n);
    svg.append(s('g', {class: `node ${n.kind}`, data: {kind: n.kind.split(' ')[0], name: n.label}},
      s('title', {}, n.description ?? n.label),
      s('rect', {x: b.x, y: b.y, width: b.w, height: b.h, rx: n.kind.includes('topic') || n.kind.includes('changelog') ? 18 : 4}),
      s('text', {class: 'label', x: b.x + 12, y: b.y + 17}, n.label),
      s('text', {class: 'sub', x: b.x + 12, y: b.y + 32}, n.sub)));
  }
  return svg;
}

export function mount(root, _params, ctx) {
  const out = h('div', {id: 'topology'}, h('p', {class: 'muted'}, 'Loading…'));
  root.append(h('div', {class: 'page-head'}, h('h1', {}, 'Topology')), out);
  api('streams/topology', {signal: ctx.signal}).then((t) => {
    const l = layout(t);
    const all = [t.source, ...(t.processors ?? []), ...(t.stores ?? []), ...(t.sinks ?? [])].filter(Boolean);
    out.replaceChildren(
      h('div', {class: 'diagram card'}, draw(l)),
      h('ul', {class: 'legend'},
        h('li', {class: 'k-topic'}, 'topic'), h('li', {class: 'k-processor'}, 'processor'),
        h('li', {class: 'k-store'}, 'state store'), h('li', {class: 'k-sink'}, 'sink'),
        h('li', {class: 'k-dlq'}, 'dead letters (records that fail)')),
      h('table', {id: 'topology-nodes'},
        h('caption', {}, 'Nodes'),
        h('thead', {}, h('tr', {}, h('th', {scope: 'col'}, 'Node'), h('th', {scope: 'col'}, 'Topic'), h('th', {scope: 'col'}, 'What it does'))),
        h('tbody', {}, all.map((n) => h('tr', {data: {node: n.name}},
          h('th', {scope: 'row', class: 'mono'}, n.name),
          h('td', {class: 'mono'}, n.topic ?? n.changelog ?? ''),
          h('td', {}, n.description ?? ''))))));
    root.dataset.loaded = 'true';
  }, (err) => {
    if (err.name !== 'AbortError' && err.status !== 401) {
      out.replaceChildren(message('error', `The topology could not be read: ${describe(err)}`));
    }
  });
  return () => {};
}
