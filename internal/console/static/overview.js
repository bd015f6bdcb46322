// The overview: every member of the group as GET /api/v1/cluster/status
// sees it (state, tasks, lag, restores), the partition map, and charts of
// the throughput and the total lag, polled every 2 s.

import {api, describe} from './api.js';
import {lineChart} from './chart.js';
import {clock, h, message, num, s} from './dom.js';

const POLL = 2000;
const SPAN = 5 * 60 * 1000;

// The figures outlive the page, so that coming back to the overview shows
// the minutes before; points older than SPAN are dropped.
const history = {throughput: [], lag: []};
const lastProcessed = new Map(); // member -> {t, n}
// Members seen since the console was loaded, with their URL: one that
// leaves the group's view (killed and dropped by the group, or scaled
// away) stays on the overview as missing until the page is reloaded.
const seen = new Map(); // member -> {url, since}

const count = (v) => (Array.isArray(v) ? v.length : Number.isFinite(v) ? v : 0);

// healthy: reachable and RUNNING.
export function healthy(m) {
  return m.reachable !== false && m.state === 'RUNNING';
}

// record adds a point to the charts: records/s since the last poll summed
// over the members that answered both times (a member whose counter went
// back, a restart, counts from zero), and the lag summed over those that
// answered now.
function record(t, members) {
  let rate = 0;
  let rated = false;
  let lag = 0;
  let lagged = false;
  for (const m of members) {
    if (m.reachable === false) {
      lastProcessed.delete(m.member);
      continue;
    }
    if (Number.isFinite(m.lag)) {
      lag += m.lag;
      lagged = true;
    }
    if (!Number.isFinite(m.records_processed)) continue;
    const prev = lastProcessed.get(m.member);
    lastProcessed.set(m.member, {t, n: m.records_processed});
    if (prev && t > prev.t) {
      const delta = m.records_processed >= prev.n ? m.records_processed - prev.n : m.records_processed;
      rate += delta / ((t - prev.t) / 1000);
      rated = true;
    }
  }
  if (rated) history.throughput.push({t, v: Math.round(rate * 10) / 10});
  if (lagged) history.lag.push({t, v: lag});
  for (const series of Object.values(history)) {
    while (series.length && series[0].t < t - SPAN) series.shift();
  }
}

// withMissing adds a row for every member seen before that the view no
// longer lists.
function withMissing(members, t) {
  const listed = new Set(members.map((m) => m.member));
  for (const m of members) seen.set(m.member, {url: m.url, since: null});
  const out = [...members];
  for (const [name, info] of seen) {
    if (listed.has(name)) continue;
    info.since ??= t;
    out.push({member: name, url: info.url, reachable: false, missing: true,
      error: `not in the group's view since ${clock(new Date(info.since))}`});
  }
  return out;
}

function memberRow(m) {
  const ok = healthy(m);
  const state = m.missing ? 'MISSING' : m.reachable === false ? 'UNREACHABLE' : (m.state ?? 'UNKNOWN');
  const gone = m.reachable === false;
  return h('tr', {data: {member: m.member, health: ok ? 'ok' : 'unhealthy', state}},
    h('th', {scope: 'row'}, m.member),
    h('td', {}, h('span', {class: `badge ${ok ? 'ok' : 'bad'}`, data: {field: 'state'}}, state)),
    h('td', {class: 'num', data: {field: 'active'}}, gone ? '—' : num(count(m.active_tasks))),
    h('td', {class: 'num', data: {field: 'restoring'}}, gone ? '—' : num(count(m.restoring_tasks))),
    h('td', {class: 'num', data: {field: 'standby'}}, gone ? '—' : num(count(m.standby_tasks))),
    h('td', {class: 'num', data: {field: 'lag'}}, gone ? '—' : num(m.lag)),
    h('td', {class: 'num', data: {field: 'processed'}}, gone ? '—' : num(m.records_processed)),
    h('td', {}, m.version ?? '—'),
    h('td', {class: 'detail'},
      m.url ? h('span', {class: 'mono'}, m.url) : null,
      m.error ? h('span', {class: 'error-text', data: {field: 'error'}}, m.error) : null,
      m.reason ? h('span', {class: 'error-text', data: {field: 'reason'}}, m.reason) : null));
}

function restoreRows(members) {
  const rows = [];
  for (const m of members) {
    for (const task of Array.isArray(m.restoring_tasks) ? m.restoring_tasks : []) {
      const total = Math.max(0, task.restore_total ?? 0);
      const done = Math.min(total, Math.max(0, task.restore_done ?? 0));
      const pct = total ? Math.floor((done / total) * 100) : 0;
      const id = `restore-${m.member}-${task.partition}`;
      rows.push(h('li', {class: 'restore', data: {member: m.member, partition: task.partition}},
        h('label', {for: id}, `${m.member} · partition ${task.partition}`),
        h('progress', {id, max: total || 1, value: done}),
        h('span', {class: 'num muted'}, `${num(done)} / ${num(total)} (${pct} %)`)));
    }
  }
  return rows;
}

function partitionRow(p) {
  const standbys = p.standbys ?? [];
  return h('tr', {data: {partition: p.partition, owner: p.owner ?? '', standbys: standbys.join(',')}},
    h('th', {scope: 'row', class: 'num'}, p.partition),
    h('td', {class: p.owner ? '' : 'error-text'}, p.owner || 'no owner'),
    h('td', {}, standbys.length ? standbys.join(', ') : h('span', {class: 'muted'}, 'none')));
}

function table(id, caption, heads, body) {
  return h('table', {id},
    h('caption', {}, caption),
    h('thead', {}, h('tr', {}, heads.map(([label, cls]) => h('th', {scope: 'col', class: cls}, label)))),
    body);
}

export function mount(root, _params, ctx) {
  const summary = h('div', {class: 'summary', id: 'summary'});
  const status = h('p', {class: 'muted', id: 'overview-status', 'aria-live': 'polite'}, 'Loading…');
  const problem = h('div', {id: 'overview-error'});
  const members = h('tbody');
  const partitions = h('tbody');
  const restores = h('ul', {class: 'restores', id: 'restores'});
  const throughput = s('svg', {class: 'chart', id: 'chart-throughput'});
  const lag = s('svg', {class: 'chart lag', id: 'chart-lag'});

  root.append(
    h('div', {class: 'page-head'}, h('h1', {}, 'Overview'), status),
    problem,
    summary,
    table('members', 'Members', [['Member'], ['State'], ['Active', 'num'], ['Restoring', 'num'], ['Standby', 'num'],
      ['Lag', 'num'], ['Processed', 'num'], ['Version'], ['URL']], members),
    h('section', {class: 'restore-section'}, h('h2', {}, 'Restores'), restores),
    h('div', {class: 'overview-grid'},
      h('figure', {class: 'card'}, h('figcaption', {}, 'Throughput (records/s)'), throughput),
      h('figure', {class: 'card'}, h('figcaption', {}, 'Total lag (records)'), lag),
      table('partitions', 'Partition map', [['Partition', 'num'], ['Owner'], ['Standbys']], partitions)));

  // The charts span the figures collected so far, from a minute up to
  // SPAN.
  const draw = () => {
    const now = Date.now();
    const first = Math.min(history.throughput[0]?.t ?? now, history.lag[0]?.t ?? now);
    const span = Math.min(SPAN, Math.max(60000, now - first));
    lineChart(throughput, history.throughput, {span, now, label: 'Throughput', unit: 'records/s'});
    lineChart(lag, history.lag, {span, now, label: 'Total lag', unit: 'records'});
  };
  draw();

  let timer = 0;
  const poll = async () => {
    if (document.hidden) { // no polling while nobody looks
      timer = setTimeout(poll, POLL);
      return;
    }
    try {
      const body = await api('cluster/status', {signal: ctx.signal});
      const t = Date.now();
      record(t, body?.members ?? []);
      const list = withMissing(body?.members ?? [], t);
      const placed = body?.partition_map ?? [];
      members.replaceChildren(...list.map(memberRow));
      partitions.replaceChildren(...placed.map(partitionRow));
      const rows = restoreRows(list);
      restores.replaceChildren(...(rows.length ? rows : [h('li', {class: 'muted'}, 'No task is restoring.')]));
      const ok = list.filter(healthy).length;
      const totalLag = history.lag.at(-1)?.t === t ? history.lag.at(-1).v : null;
      const rate = history.throughput.at(-1)?.t === t ? history.throughput.at(-1).v : null;
      summary.replaceChildren(
        stat('Members healthy', `${ok} / ${list.length}`, ok === list.length ? 'ok' : 'bad'),
        stat('Partitions', num(body?.partitions ?? placed.length), placed.some((p) => !p.owner) ? 'bad' : ''),
        stat('Records/s', num(rate)),
        stat('Total lag', num(totalLag)));
      problem.replaceChildren();
      status.textContent = `Updated ${clock()} by ${body?.self ?? 'this member'} · every ${POLL / 1000} s`;
      root.dataset.loaded = 'true';
      draw();
    } catch (err) {
      if (err.name === 'AbortError') return;
      if (err.status === 401) return; // the login page takes over
      problem.replaceChildren(message('error', `The cluster status could not be read: ${describe(err)}`));
      status.textContent = `Failed ${clock()} · retrying every ${POLL / 1000} s`;
    }
    if (!ctx.signal.aborted) timer = setTimeout(poll, POLL);
  };
  poll();
  return () => clearTimeout(timer);
}

function stat(label, value, tone) {
  return h('div', {class: `stat ${tone ?? ''}`}, h('span', {class: 'stat-label'}, label), h('span', {class: 'stat-value'}, value));
}
