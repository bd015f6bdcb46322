// Small DOM helpers. Every text goes in as a text node, never as markup,
// and no element gets a style attribute (the console's CSP forbids them):
// looks come from console.css through classes and data attributes.

const SVG = 'http://www.w3.org/2000/svg';

// h builds an element: h('tr', {class: 'x', data: {member: 'a'}, onclick: f}, child...).
// Children are nodes, strings or numbers (as text), arrays of them, or
// null/undefined/false (skipped).
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

// s builds an SVG element the same way.
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG, tag), attrs, children);
}

function build(el, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'data') {
      for (const [dk, dv] of Object.entries(v)) {
        if (dv !== undefined && dv !== null) el.dataset[dk] = String(dv);
      }
    } else if (k.startsWith('on') && typeof v === 'function') {
      el.addEventListener(k.slice(2), v);
    } else if (k === 'style') {
      throw new Error('no style attributes: the CSP forbids them');
    } else {
      el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

const integer = new Intl.NumberFormat('en-US', {maximumFractionDigits: 0});
const decimal = new Intl.NumberFormat('en-US', {maximumFractionDigits: 1});

// num formats a count with thousands separators; '—' for none.
export function num(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return '—';
  return Number.isInteger(v) ? integer.format(v) : decimal.format(v);
}

// time formats epoch milliseconds as a local date and time with seconds
// (and milliseconds when there are any).
export function time(ms) {
  const d = new Date(ms);
  const p = (n, w = 2) => String(n).padStart(w, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ` +
    `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}` +
    (d.getMilliseconds() ? `.${p(d.getMilliseconds(), 3)}` : '');
}

// clock formats a Date as hh:mm:ss.
export function clock(d = new Date()) {
  return d.toTimeString().slice(0, 8);
}

// message is a notice: kind info, error or warn.
export function message(kind, text) {
  return h('p', {class: `notice ${kind}`, role: kind === 'error' ? 'alert' : 'status'}, text);
}

// field is a labelled input.
export function field(label, input, hint) {
  return h('label', {class: 'field'}, h('span', {class: 'label'}, label), input,
    hint ? h('span', {class: 'hint'}, hint) : null);
}
