// A small SVG line chart for a series of {t, v} points (t in ms) over the
// last span ms; drawn again on every update.

import {num, s} from './dom.js';

const W = 380;
const H = 140;
const PAD = {left: 56, right: 12, top: 12, bottom: 24};

// niceMax rounds up to 1, 2 or 5 times a power of ten (at least 2, so
// that the middle line of the grid is a whole number).
export function niceMax(v) {
  if (!(v > 2)) return 2;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) {
    if (v <= m * p) return m * p;
  }
  return 10 * p;
}

// lineChart draws points into svg (an <svg> element), the last span ms
// up to now; label and unit name the figure for screen readers.
export function lineChart(svg, points, {span, now = Date.now(), label, unit}) {
  const from = now - span;
  const shown = points.filter((p) => p.t >= from && Number.isFinite(p.v));
  const max = niceMax(Math.max(0, ...shown.map((p) => p.v)));
  const x = (t) => PAD.left + ((t - from) / span) * (W - PAD.left - PAD.right);
  const y = (v) => H - PAD.bottom - (v / max) * (H - PAD.top - PAD.bottom);

  const grid = [0, max / 2, max].map((v) => [
    s('line', {class: 'grid', x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v)}),
    s('text', {class: 'tick', x: PAD.left - 6, y: y(v) + 4, 'text-anchor': 'end'}, num(v)),
  ]);
  const ago = (ms) => (ms >= 60000 ? `−${num(Math.round(ms / 6000) / 10)} min` : `−${Math.round(ms / 1000)} s`);
  const ticks = [0, 0.5, 1].map((f) => s('text', {
    class: 'tick', x: PAD.left + f * (W - PAD.left - PAD.right), y: H - 6,
    'text-anchor': f === 0 ? 'start' : f === 1 ? 'end' : 'middle',
  }, f === 1 ? 'now' : ago(span * (1 - f))));

  const children = [grid, ticks];
  if (shown.length > 1) {
    const d = shown.map((p, i) => `${i ? 'L' : 'M'}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(' ');
    const last = shown[shown.length - 1];
    children.push(
      s('path', {class: 'area', d: `${d} L${x(last.t).toFixed(1)},${y(0)} L${x(shown[0].t).toFixed(1)},${y(0)} Z`}),
      s('path', {class: 'line', d}),
      s('circle', {class: 'dot', cx: x(last.t), cy: y(last.v), r: 3}));
  } else {
    children.push(s('text', {class: 'tick', x: W / 2, y: H / 2, 'text-anchor': 'middle'}, 'collecting…'));
  }
  const last = shown.at(-1);
  const peak = Math.max(0, ...shown.map((p) => p.v));
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', last
    ? `${label}: now ${num(last.v)} ${unit}, peak ${num(peak)} over the last ${ago(span).slice(1)}`
    : `${label}: no figures yet`);
  svg.dataset.points = String(shown.length);
  svg.dataset.last = last ? String(last.v) : '';
  svg.dataset.peak = String(peak);
  svg.replaceChildren(...children.flat(2));
}
