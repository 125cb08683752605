// SPDX-License-Identifier: GPL-2.0
//
// The page of an mmscope trace: the JSON lines of `mmscope trace --json`, which this file
// holds (gzip, base64), read into one model per address space and drawn as SVG by hand.
//
// The model of an address space: its columns (column 0 the address space the trace started
// from, column k the one step k of this process left), and its VMAs' lives, each a band from
// the column that added it to the one that removed it. The vertical axis is the addresses the
// VMAs ever took, the unmapped gaps between them collapsed.
'use strict';

const PAGE = 4096;
const KINDS = ['heap', 'stack', 'anon', 'file', 'shmem', 'vdso', 'vvar', 'mmscope', 'special'];
const SERIES = [
  ['heap', 'heap: brk - start_brk', '#e69a2e'],
  ['anon', 'anonymous mappings (their size, with access)', '#4fae62'],
  ['rss', 'RssAnon (resident: the pages touched)', '#0b7285'],
];
const $ = (id) => document.getElementById(id);

// ---- formatting ----

function hex(n) { return typeof n === 'number' ? '0x' + n.toString(16) : '?'; }

function size(bytes) {
  if (bytes == null) return '?';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let u = 0;
  while (u + 1 < units.length && bytes >= 2 ** (10 * (u + 1))) u++;
  const v = bytes / 2 ** (10 * u);
  if (Number.isInteger(v)) return v + ' ' + units[u];
  return v.toFixed(v < 10 ? 2 : 1) + ' ' + units[u];
}

function delta(before, after) {
  if (before == null || after == null) return '?';
  if (after === before) return '±0';
  return (after > before ? '+' : '-') + size(Math.abs(after - before));
}

function esc(s) {
  return String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);
}

function ms(us) { return (us / 1000).toFixed(us < 10000 ? 3 : 1) + ' ms'; }

function vmaLine(v) {
  return hex(v.start) + '-' + hex(v.end) + ' ' + v.perms + ' ' + size(v.end - v.start).padStart(9) + ' ' +
    v.kind + (v.name ? ' ' + v.name : '');
}

function frameText(f) {
  let s = f.function || '[' + (f.module ? f.module.split('/').pop() + '+' + hex(f.module_addr) : hex(f.addr)) + ']';
  if (f.file) s += ' (' + f.file.replace(/^.*\//, '') + (f.line ? ':' + f.line : '') + ')';
  if (f.inlined) s += ' inlined';
  return s;
}

// ---- reading the trace ----

async function readTrace() {
  const b64 = $('trace').textContent.trim();
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'));
  const text = await new Response(stream).text();
  return text.split('\n').filter((l) => l.length > 0).map((l) => JSON.parse(l));
}

// One address space: a process from its exec, fork or attach on.
function newSpace(e, how) {
  const space = {
    pid: e.pid,
    how,
    start: e,
    cols: [{
      step: null, time: 0, brk: e.brk, heap: e.heap_bytes, anon: e.anon_bytes,
      rss: e.rss ? e.rss.anon : null, mapCount: e.map_count,
    }],
    vmas: [], // lives: {start, end, perms, kind, name, from, to}
    live: [],
    threads: new Set([e.pid]),
    parents: new Map(),
    resident: [], // {col, sites: [{site, pages, stack, label}], pages, rss}
    pendingBefore: [],
    sites: new Map(),
    name: null,
  };
  for (const v of e.vmas) addLife(space, v, 0);
  const exe = e.vmas.find((v) => v.kind === 'file' && v.offset === 0 && v.perms.includes('r'));
  space.name = exe ? exe.name : '';
  return space;
}

function addLife(space, v, col) {
  const life = { start: v.start, end: v.end, perms: v.perms, kind: v.kind, name: v.name || '', from: col, to: Infinity };
  space.vmas.push(life);
  space.live.push(life);
}

// Ends the lives overlapping [start, end) at column `col`.
function endLives(space, start, end, col) {
  space.live = space.live.filter((l) => {
    if (l.start < end && start < l.end) { l.to = col; return false; }
    return true;
  });
}

function buildModel(events) {
  const spaces = [];
  const byPid = new Map();
  let summary = null;
  let steps = 0;
  for (const e of events) {
    switch (e.event) {
      case 'exec': case 'attach': case 'fork': {
        const s = newSpace(e, e.event);
        spaces.push(s);
        byPid.set(e.pid, s);
        break;
      }
      case 'thread': {
        const s = byPid.get(e.pid);
        if (s) { s.threads.add(e.tid); s.parents.set(e.tid, e.parent); }
        break;
      }
      case 'syscall': {
        steps++;
        const s = byPid.get(e.pid);
        if (!s) break;
        const col = s.cols.length;
        s.threads.add(e.tid);
        // What changed since the process's previous call that no call traced did (a stack
        // that grew, mlock), then the call's own changes.
        for (const v of e.removed_before || []) endLives(s, v.start, v.end, col);
        for (const v of e.added_before || []) { endLives(s, v.start, v.end, col); addLife(s, v, col); }
        for (const v of e.removed) endLives(s, v.start, v.end, col);
        for (const v of e.added) { endLives(s, v.start, v.end, col); addLife(s, v, col); }
        // Calls are numbered as they return and timed as they were entered: with threads, a
        // later step may have been entered earlier; the axis keeps the steps' order.
        const prev = s.cols[col - 1];
        if (col === 1) prev.time = e.time_us || 0;
        s.cols.push({
          step: e, time: Math.max(prev.time, e.time_us || 0), brk: e.brk_after,
          heap: e.heap_bytes, anon: e.anon_bytes, rss: e.rss ? e.rss.anon : null, mapCount: e.map_count,
        });
        for (const r of s.pendingBefore) r.col = col;
        s.pendingBefore = [];
        break;
      }
      case 'resident': {
        const s = byPid.get(e.pid);
        if (!s) break;
        for (const site of e.sites) {
          if (!s.sites.has(site.site)) s.sites.set(site.site, { stack: site.stack || [], label: site.label });
        }
        const r = { col: s.cols.length - 1, when: e.when, syscall: e.syscall, sites: e.sites, pages: e.pages };
        if (e.when === 'before') s.pendingBefore.push(r);
        s.resident.push(r);
        break;
      }
      case 'summary': summary = e; break;
      default: break;
    }
  }
  if (spaces.length) spaces[0].cols[0].time = 0;
  for (const s of spaces) {
    for (const r of s.pendingBefore) r.col = s.cols.length - 1;
  }
  return { spaces, summary, steps, events: events.length };
}

// ---- the view's state ----

const view = {
  model: null, space: null, cols: [], // visible columns: indices into space.cols
  pos: new Int32Array(0), // space column -> visible position (or -1)
  sel: 0, // selected visible position
  axis: 'steps', lo: null, hi: null, calls: null, thread: '', flame: false, flameAt: null, flameRoot: [],
  y: null, x: null, chart: null,
};

function spaceColumns() {
  const s = view.space;
  const cols = [0];
  for (let c = 1; c < s.cols.length; c++) {
    const st = s.cols[c].step;
    if (view.calls && !view.calls.has(st.syscall)) continue;
    if (view.thread && String(st.tid) !== view.thread) continue;
    cols.push(c);
  }
  view.cols = cols;
  view.pos = new Int32Array(s.cols.length).fill(-1);
  cols.forEach((c, i) => { view.pos[c] = i; });
}

// The first visible position whose column is at least `col`.
function firstPos(col) {
  const cols = view.cols;
  let lo = 0, hi = cols.length;
  while (lo < hi) { const m = (lo + hi) >> 1; if (cols[m] < col) lo = m + 1; else hi = m; }
  return lo;
}

// ---- the axes ----

// The vertical axis: the addresses [lo, hi) as segments between the VMAs' edges, each mapped
// or a gap; mapped segments get height by their size's logarithm, gaps a little each.
function addressAxis(space, lo, hi, height) {
  const edges = new Set();
  const marks = [];
  for (const l of space.vmas) {
    if (l.end <= lo || l.start >= hi) continue;
    edges.add(Math.max(l.start, lo)); edges.add(Math.min(l.end, hi));
    marks.push([Math.max(l.start, lo), 1], [Math.min(l.end, hi), -1]);
  }
  // brk's values are edges too, so that each of its moves shows, even within a page.
  for (const c of space.cols) if (c.brk != null && c.brk > lo && c.brk < hi) edges.add(c.brk);
  if (edges.size < 2) {
    // Nothing mapped in the range: the range itself, as far as the VMAs ever reached.
    let top = 0, bottom = Infinity;
    for (const l of space.vmas) { top = Math.max(top, l.end); bottom = Math.min(bottom, l.start); }
    edges.add(Math.max(lo, Math.min(bottom, ...edges)));
    edges.add(Math.min(hi, Math.max(top, ...edges, lo + PAGE)));
  }
  const b = [...edges].sort((p, q) => p - q);
  marks.sort((p, q) => p[0] - q[0] || p[1] - q[1]);
  const segs = [];
  let depth = 0, m = 0;
  for (let i = 0; i + 1 < b.length; i++) {
    while (m < marks.length && marks[m][0] <= b[i]) { depth += marks[m][1]; m++; }
    const len = b[i + 1] - b[i];
    const mapped = depth > 0;
    segs.push({ a: b[i], z: b[i + 1], mapped, weight: mapped ? 1 + Math.log2(1 + len / PAGE) : 0.4 });
  }
  // A large gap gets room for its label: 3.5% of what the mapped segments take.
  const mappedWeight = segs.reduce((t, s) => t + (s.mapped ? s.weight : 0), 0);
  for (const s of segs) if (!s.mapped && s.z - s.a > 64 * PAGE) s.weight = Math.max(2, 0.035 * mappedWeight);
  const total = segs.reduce((t, s) => t + s.weight, 0) || 1;
  let y = height;
  for (const s of segs) { s.y1 = y; s.h = (s.weight / total) * height; y -= s.h; s.y0 = y; }
  const find = (a) => {
    let l = 0, h = segs.length - 1;
    while (l < h) { const mid = (l + h + 1) >> 1; if (segs[mid].a <= a) l = mid; else h = mid - 1; }
    return segs[l];
  };
  return {
    segs, lo: b[0], hi: b[b.length - 1],
    y(a) {
      if (a <= b[0]) return height;
      if (a >= b[b.length - 1]) return 0;
      const s = find(a);
      return s.y1 - ((a - s.a) / (s.z - s.a)) * s.h;
    },
    addr(yy) {
      for (const s of segs) if (yy >= s.y0 && yy <= s.y1) return s.a + ((s.y1 - yy) / s.h) * (s.z - s.a);
      return null;
    },
  };
}

// The horizontal axis: visible positions, by order or by time.
function stepAxis(width) {
  const s = view.space, cols = view.cols, n = cols.length;
  if (view.axis === 'time') {
    const times = cols.map((c) => s.cols[c].time);
    const last = times[n - 1];
    const end = last + Math.max(1, last / Math.max(1, n - 1));
    const at = (p) => (p >= n ? end : times[p]) / end * width;
    return { at, end, ofTime: (t) => t / end * width, pos(x) { let p = 0; while (p + 1 < n && at(p + 1) <= x) p++; return p; } };
  }
  const w = width / n;
  return { at: (p) => p * w, pos: (x) => Math.max(0, Math.min(n - 1, Math.floor(x / w))) };
}

// ---- drawing ----

const GUTTER = 132;

function svgSize(svg, w, h) {
  svg.setAttribute('viewBox', `0 0 ${w} ${h}`);
  svg.setAttribute('height', h);
}

function drawSpace() {
  const s = view.space;
  const svg = $('space-chart');
  const width = Math.max(400, $('charts').clientWidth || 900);
  const height = 470;
  const plotW = width - GUTTER - 8;
  svgSize(svg, width, height + 22);
  const lo = view.lo ?? 0, hi = view.hi ?? Number.MAX_SAFE_INTEGER;
  const y = addressAxis(s, lo, hi, height);
  const x = stepAxis(plotW);
  view.y = y; view.x = x; view.chart = { width, height, plotW };
  const out = [];
  out.push(`<g class="axis">`);
  // The gaps, and the addresses at each mapped run's edges.
  let lastLabel = Infinity;
  for (const seg of y.segs) {
    if (!seg.mapped) {
      out.push(`<rect class="gap" x="${GUTTER}" y="${seg.y0}" width="${plotW}" height="${seg.h}"/>`);
      if (seg.h >= 10) {
        out.push(`<text class="gap-label" x="${GUTTER + 4}" y="${(seg.y0 + seg.y1) / 2 + 4}">${size(seg.z - seg.a)} unmapped</text>`);
      }
    }
    if (lastLabel - seg.y1 >= 12 || seg === y.segs[0]) {
      out.push(`<text x="${GUTTER - 4}" y="${seg.y1}" text-anchor="end">${hex(seg.a)}</text>`);
      lastLabel = seg.y1;
    }
  }
  if (lastLabel >= 22) out.push(`<text x="${GUTTER - 4}" y="10" text-anchor="end">${hex(y.hi)}</text>`);
  out.push(`</g><g transform="translate(${GUTTER},0)">`);
  // The VMAs' lives, each a band across the columns it lived.
  let bands = 0;
  const labels = [];
  for (const l of s.vmas) {
    if (l.end <= y.lo || l.start >= y.hi) continue;
    const p0 = firstPos(l.from), p1 = firstPos(l.to);
    if (p1 <= p0) continue;
    const x0 = x.at(p0), x1 = x.at(p1);
    const y0 = y.y(Math.min(l.end, y.hi)), y1 = y.y(Math.max(l.start, y.lo));
    const h = Math.max(y1 - y0, 0.5);
    const none = l.perms.startsWith('---') ? ' none' : '';
    out.push(`<rect class="vma k-${esc(l.kind)}${none}" x="${x0.toFixed(2)}" y="${y0.toFixed(2)}" width="${Math.max(x1 - x0, 1).toFixed(2)}" height="${h.toFixed(2)}"/>`);
    bands++;
    if (h >= 11 && x1 - x0 >= 70) labels.push([x0, y0, h, l]);
  }
  for (const [x0, y0, h, l] of labels.slice(0, 400)) {
    const name = l.name ? l.name.split('/').pop() : l.kind;
    out.push(`<text class="band-label" x="${x0 + 3}" y="${y0 + Math.min(h, 22) / 2 + 4}">${esc(name + ' ' + l.perms)}</text>`);
  }
  // brk, as a step line over the columns, and mmap_base.
  const brks = view.cols.map((c) => s.cols[c].brk);
  let d = '';
  brks.forEach((b, p) => {
    if (b == null) return;
    const yy = y.y(b).toFixed(3);
    d += (d ? 'L' : 'M') + x.at(p).toFixed(2) + ' ' + yy + 'L' + x.at(p + 1).toFixed(2) + ' ' + yy;
  });
  out.push(`<path id="brk-line" class="brk" d="${d}" data-brk="${brks.map((b) => b ?? '').join(',')}"/>`);
  const base = s.start.mmap_base;
  if (base != null && base > y.lo && base < y.hi) {
    const yy = y.y(base).toFixed(2);
    out.push(`<line id="base-line" class="base" x1="0" x2="${plotW}" y1="${yy}" y2="${yy}" data-addr="${base}"/>`);
    out.push(`<text x="${plotW - 4}" y="${yy - 3}" text-anchor="end" fill="#6b3fa0">mmap_base</text>`);
  }
  const last = brks[brks.length - 1];
  if (last != null && last > y.lo && last < y.hi) {
    out.push(`<text x="${plotW - 4}" y="${y.y(last) - 3}" text-anchor="end" fill="#b3261e">brk</text>`);
  }
  out.push(`<rect id="space-cursor" class="cursor" x="0" y="0" width="1" height="${height}"/>`);
  out.push(`<rect id="drag" class="cursor" x="0" y="0" width="${plotW}" height="0" visibility="hidden"/>`);
  out.push(`</g>`);
  out.push(stepTicks(height, plotW));
  svg.innerHTML = out.join('');
  svg.dataset.bands = bands;
  svg.dataset.columns = view.cols.length;
  svg.dataset.plotLeft = GUTTER;
  svg.dataset.plotWidth = plotW;
}

// The horizontal axis's ticks: step numbers or milliseconds.
function stepTicks(top, plotW) {
  const s = view.space, x = view.x, n = view.cols.length;
  const out = [`<g class="axis" transform="translate(${GUTTER},${top})">`];
  const count = Math.max(2, Math.floor(plotW / 100));
  const tick = (xx, label, i, last) => {
    const anchor = i === 0 ? 'start' : i === last ? 'end' : 'middle';
    out.push(`<line x1="${xx}" x2="${xx}" y1="0" y2="4"/><text x="${xx}" y="15" text-anchor="${anchor}">${label}</text>`);
  };
  if (view.axis === 'time') {
    // Evenly spaced times, not steps: the steps crowd where the program was busy.
    for (let i = 0; i < count; i++) tick(x.ofTime((x.end * i) / (count - 1)), ms((x.end * i) / (count - 1)), i, count - 1);
  } else {
    // Each label under the middle of its step's column.
    const ticks = Math.min(n, count);
    for (let i = 0; i < ticks; i++) {
      const p = Math.round((i * (n - 1)) / Math.max(1, ticks - 1));
      const c = view.cols[p];
      tick((x.at(p) + x.at(p + 1)) / 2, c === 0 ? 'start' : '#' + s.cols[c].step.step, i, ticks - 1);
    }
  }
  out.push('</g>');
  return out.join('');
}

function drawCounters() {
  const s = view.space, svg = $('counters');
  const { width, plotW } = view.chart;
  const height = 130;
  svgSize(svg, width, height + 4);
  const x = view.x;
  const vals = SERIES.map(([key]) => view.cols.map((c) => s.cols[c][key]));
  const max = vals.flat().reduce((m, v) => (v != null && v > m ? v : m), PAGE);
  const yy = (v) => (height - 4 - (v / max) * (height - 14)).toFixed(2);
  const out = [`<g class="axis"><text x="${GUTTER - 4}" y="12" text-anchor="end">${size(max)}</text>`,
    `<text x="${GUTTER - 4}" y="${height - 4}" text-anchor="end">0</text>`,
    `<line x1="${GUTTER}" x2="${GUTTER + plotW}" y1="${height - 4}" y2="${height - 4}"/></g>`,
    `<g transform="translate(${GUTTER},0)">`];
  SERIES.forEach(([key, , color], i) => {
    // A value not known (the address space could not be read) leaves a gap in the line.
    let d = '', gap = true;
    vals[i].forEach((v, p) => {
      if (v == null) { gap = true; return; }
      d += (gap ? 'M' : 'L') + x.at(p).toFixed(2) + ' ' + yy(v) + 'L' + x.at(p + 1).toFixed(2) + ' ' + yy(v);
      gap = false;
    });
    out.push(`<path id="series-${key}" class="series" stroke="${color}" d="${d}"/>`);
  });
  out.push(`<rect id="counter-cursor" class="cursor" x="0" y="0" width="1" height="${height}"/></g>`);
  svg.innerHTML = out.join('');
  const names = { mmscope: 'mmscope (the device)', special: 'special (other kernel mappings)', vvar: 'vvar', vdso: 'vDSO' };
  const item = (swatch, label) => `<span class="item">${swatch}${label}</span>`;
  $('legend').innerHTML = KINDS.map((k) => item(`<i class="k-${k}"></i>`, names[k] || k)).join('') +
    item('<i class="k-anon" style="opacity:0.4"></i>', 'pale: PROT_NONE (reserved, no access)') +
    item('<i style="background:var(--sel)"></i>', 'the selected step') + '<br>' +
    item('<i style="background:#b3261e"></i>', 'brk (the line in the picture)') +
    (s.start.mmap_base != null ? item('<i style="background:#6b3fa0"></i>', 'mmap_base (dashed)')
      : item('', 'mmap_base unknown (procfs does not show it; load the module)')) + '<br>' +
    SERIES.map(([, label, color]) => item(`<i style="background:${color}"></i>`, label)).join('') + '<br>' +
    'Heights are not to scale: each piece of the address space between two VMA edges is as tall as the logarithm of its size, ' +
    'and the unmapped gaps are collapsed (their size is written in them); an address on the left is the start of the piece above it. ' +
    'White in a band\'s row: not mapped at that step. Hover for a VMA\'s range and size.' +
    (view.calls || view.thread ? ' <b>Filtered</b>: what the hidden calls changed shows at the next call shown.' : '');
}

function drawCursor() {
  const p = view.sel, x = view.x;
  const x0 = x.at(p), w = Math.max(x.at(p + 1) - x0, 2);
  for (const id of ['space-cursor', 'counter-cursor']) {
    const r = $(id);
    if (r) { r.setAttribute('x', x0); r.setAttribute('width', w); }
  }
}

// ---- the step list, the detail and the VMA table ----

function stepText(c) {
  const s = view.space;
  if (c === 0) return `start: ${s.how} of pid ${s.pid}${s.name ? ' (' + s.name + ')' : ''}, ${s.start.vmas.length} VMAs`;
  const e = s.cols[c].step;
  const ret = e.ret == null ? '?' : (e.errno ? `-1 ${e.errno}` : (e.ret > 4096 ? hex(e.ret) : String(e.ret)));
  return `#${e.step} [${e.tid}] ${e.call} = ${ret}`;
}

function drawSteps() {
  const rows = view.cols.map((c, p) => {
    const e = view.space.cols[c].step;
    return `<div data-pos="${p}"${e && e.errno ? ' class="failed"' : ''}>${esc(stepText(c))}</div>`;
  });
  $('steps').innerHTML = rows.join('');
}

function kernelTree(nodes, depth, out) {
  for (const n of nodes) {
    out.push('  '.repeat(depth) + n.function + (n.count > 1 ? ' ×' + n.count : '') + (n.ns != null ? '  ' + (n.ns / 1000).toFixed(1) + ' µs' : ''));
    if (n.calls) kernelTree(n.calls, depth + 1, out);
  }
  return out;
}

function residentLines(rs, s) {
  const out = [];
  for (const r of rs) {
    for (const site of r.sites) {
      const info = s.sites.get(site.site) || {};
      const top = info.label ? '[' + info.label + ']' : (info.stack && info.stack.length ? frameText(info.stack[0]) : '?');
      out.push(`<span class="${site.pages > 0 ? 'add' : 'del'}">${site.pages > 0 ? '+' : ''}${site.pages} pages</span> ${esc(top)}`);
    }
  }
  return out;
}

function drawDetail() {
  const s = view.space, c = view.cols[view.sel], col = s.cols[c];
  const out = [];
  if (c === 0) {
    const e = s.start;
    out.push(`<h2 class="call">${esc(stepText(0))}</h2>`);
    out.push(`<p>The address space as the trace ${s.how === 'attach' ? 'attached' : 'began'}: ${e.map_count ?? e.vmas.length} VMAs, ` +
      `brk <span id="brk-after">${hex(e.brk)}</span> (start_brk ${hex(e.start_brk)}), mmap_base ${hex(e.mmap_base)}, from ${esc(e.source || 'the parent')}.</p>`);
  } else {
    const e = col.step;
    out.push(`<h2 class="call">${esc(stepText(c))}</h2>`);
    out.push(`<p class="dim">step ${e.step} of ${view.model.steps}, process ${e.pid}, thread ${e.tid}, at ${ms(e.time_us || 0)}</p>`);
    const hidden = view.sel > 0 ? c - view.cols[view.sel - 1] - 1 : c - 1;
    if (hidden > 0) {
      out.push(`<p class="dim">${hidden} call${hidden > 1 ? 's' : ''} the filters hide came before this one since the previous call shown; ` +
        'what they changed shows at this step in the picture, not in the lists below.</p>');
    }
    out.push('<h3>brk</h3><pre>');
    out.push(e.brk_before === e.brk_after
      ? `<span id="brk-before">${hex(e.brk_before)}</span> → <span id="brk-after">${hex(e.brk_after)}</span> unchanged`
      : `<span id="brk-before">${hex(e.brk_before)}</span> → <span id="brk-after">${hex(e.brk_after)}</span> (${delta(e.brk_before, e.brk_after)}); heap ${size(e.heap_bytes)}`);
    out.push('</pre>');
    if (e.rss) {
      out.push('<h3>RSS (at entry → at exit)</h3><pre>' + ['anon', 'file', 'shmem'].map((k) =>
        `${k.padEnd(5)} ${size(e.rss_before[k]).padStart(10)} → ${size(e.rss[k]).padStart(10)}  ${delta(e.rss_before[k], e.rss[k])}`).join('\n') + '</pre>');
    }
    out.push(`<h3>VMAs (${e.removed.length} removed, ${e.added.length} added; ${e.map_count ?? '?'} now)</h3><pre id="diff">`);
    const lines = [];
    for (const v of e.removed_before || []) lines.push(`<span class="del dim">- ${esc(vmaLine(v))}  (before the call)</span>`);
    for (const v of e.added_before || []) lines.push(`<span class="add dim">+ ${esc(vmaLine(v))}  (before the call)</span>`);
    for (const v of e.removed) lines.push(`<span class="del">- ${esc(vmaLine(v))}</span>`);
    for (const v of e.added) lines.push(`<span class="add">+ ${esc(vmaLine(v))}</span>`);
    out.push(lines.length ? lines.join('\n') : '<span class="dim">no VMA changed</span>');
    out.push('</pre>');
    const before = s.resident.filter((r) => r.col === c && r.when === 'before');
    const after = s.resident.filter((r) => r.col === c && r.when === 'after');
    const exit = s.resident.filter((r) => r.col === c && r.when === 'exit');
    const ended = s.resident.filter((r) => r.col === c && r.when === 'ended');
    for (const [events, title] of [[before, 'Pages first touched before the call'],
      [after, 'Pages the call made resident or gave back'],
      [exit, 'Pages first touched after the last call, before the exit'],
      [ended, 'Pages given back as the process ended']]) {
      const lines = residentLines(events, s);
      if (lines.length) out.push(`<h3>${title}</h3><pre>` + lines.join('\n') + '</pre>');
    }
    if (e.stack) {
      out.push('<h3>Stack</h3><pre id="stack">' + e.stack.map((f) => esc(frameText(f))).join('\n') + '</pre>');
    }
    if (e.kernel) {
      const k = e.kernel;
      if (k.faults && k.faults.length) {
        out.push(`<h3>Kernel: ${k.fault_count} page faults before the call</h3><pre>` + esc(kernelTree(k.faults, 0, []).join('\n')) + '</pre>');
      }
      out.push('<h3>Kernel: the call</h3><pre id="kernel">' + esc(kernelTree(k.call || [], 0, []).join('\n')) + (k.lost ? `\n(${k.lost} events lost)` : '') + '</pre>');
    }
  }
  $('detail').innerHTML = out.join('');
}

function drawVmas() {
  const s = view.space, c = view.cols[view.sel];
  const live = s.vmas.filter((l) => l.from <= c && c < l.to).sort((p, q) => q.start - p.start);
  const rows = live.map((l) => `<tr${l.from === c && c > 0 ? ' class="new"' : ''}><td>${hex(l.start)}</td><td>${hex(l.end)}</td>` +
    `<td>${size(l.end - l.start)}</td><td>${esc(l.perms)}</td><td><i class="k-${esc(l.kind)}" style="display:inline-block;width:8px;height:8px"></i> ${esc(l.kind)}</td><td>${esc(l.name)}</td></tr>`);
  $('vmas').tBodies[0].innerHTML = rows.join('');
  const mc = c === 0 ? s.start.map_count : s.cols[c].mapCount;
  $('vmas').caption.textContent = `${live.length} VMAs ${c === 0 ? 'at the start' : 'after step ' + s.cols[c].step.step}` +
    (mc != null ? ` (the kernel's map_count: ${mc})` : '');
}

function select(p, scroll = true) {
  if (!view.cols.length) return;
  view.sel = Math.max(0, Math.min(view.cols.length - 1, p));
  drawCursor();
  drawDetail();
  drawVmas();
  const list = $('steps');
  const old = list.querySelector('.on');
  if (old) old.classList.remove('on');
  const row = list.children[view.sel];
  if (row) {
    row.classList.add('on');
    // The list scrolls to the row; the window stays where it is.
    if (scroll) {
      const top = row.offsetTop;
      if (top < list.scrollTop) list.scrollTop = top;
      else if (top + row.offsetHeight > list.scrollTop + list.clientHeight) list.scrollTop = top + row.offsetHeight - list.clientHeight;
    }
  }
  view.flameAt = null;
  if (view.flame) drawFlame();
  document.body.dataset.selected = view.cols[view.sel];
}

// ---- resident memory as a flame graph ----

// Pages by site: after column `c`'s events, or up to event `upTo` (an index into
// s.resident); what a process gave back as it ended is not taken away (the flame graph at
// the last column is the one at exit).
function residentAt(s, c, upTo) {
  const pages = new Map();
  s.resident.forEach((r, i) => {
    if (r.col > c || (upTo != null && i > upTo) || r.when === 'ended') return;
    for (const site of r.sites) pages.set(site.site, (pages.get(site.site) || 0) + site.pages);
  });
  return pages;
}

function flameTree(s, c, upTo) {
  const root = { name: 'all', value: 0, children: new Map() };
  for (const [id, n] of residentAt(s, c, upTo)) {
    if (n <= 0) continue;
    const info = s.sites.get(id) || { stack: [] };
    const names = info.label ? ['[' + info.label + ']'] : info.stack.slice().reverse().map((f) => f.function || '[' + (f.module || '?').split('/').pop() + ']');
    let node = root;
    root.value += n;
    for (const name of names.length ? names : ['[no stack]']) {
      if (!node.children.has(name)) node.children.set(name, { name, value: 0, children: new Map() });
      node = node.children.get(name);
      node.value += n;
    }
  }
  return root;
}

function drawFlame() {
  const s = view.space, c = view.cols[view.sel];
  const upTo = view.flameAt != null && s.resident[view.flameAt].col === c ? view.flameAt : null;
  let root = flameTree(s, c, upTo);
  for (const name of view.flameRoot) {
    const next = root.children.get(name);
    if (!next) break;
    root = next;
  }
  const svg = $('flame');
  const width = Math.max(400, $('charts').clientWidth || 900);
  const rowH = 17;
  const rows = [];
  const place = (node, x, w, depth) => {
    rows.push({ node, x, w, depth });
    let xx = x;
    for (const ch of [...node.children.values()].sort((p, q) => (p.name < q.name ? -1 : 1))) {
      const cw = (w * ch.value) / node.value;
      if (cw >= 0.5) place(ch, xx, cw, depth + 1);
      xx += cw;
    }
  };
  if (root.value > 0) place(root, 0, width, 0);
  const depth = rows.reduce((d, r) => Math.max(d, r.depth), 0) + 1;
  const height = depth * rowH + 2;
  svgSize(svg, width, height);
  const out = ['<g class="flame">'];
  for (const r of rows) {
    const yy = height - (r.depth + 1) * rowH;
    const hue = 20 + ((r.node.name.length * 37) % 40);
    out.push(`<rect x="${r.x.toFixed(2)}" y="${yy}" width="${r.w.toFixed(2)}" height="${rowH - 1}" fill="hsl(${hue},80%,${60 + (r.depth % 3) * 5}%)" data-depth="${r.depth}" data-pages="${r.node.value}"><title>${esc(r.node.name)}: ${r.node.value} pages (${size(r.node.value * PAGE)})</title></rect>`);
    if (r.w > 40) {
      const chars = Math.floor((r.w - 6) / 6.5);
      const label = r.node.name.length > chars ? r.node.name.slice(0, Math.max(0, chars - 1)) + '…' : r.node.name;
      out.push(`<text x="${r.x + 3}" y="${yy + 12}">${esc(label)}</text>`);
    }
  }
  out.push('</g>');
  svg.innerHTML = out.join('');
  svg.dataset.pages = root.value;
  const at = c === 0 ? 'at the start' : s.resident[upTo]?.when === 'before' ? 'as step ' + s.cols[c].step.step + ' began'
    : 'after step ' + s.cols[c].step.step;
  const ended = c === s.cols.length - 1 && s.start.event !== 'attach';
  const when = upTo != null ? 'at its peak, ' + at : ended ? 'at exit' : at;
  $('flame-title').textContent = `Resident anonymous memory ${when}, ` +
    `by the code that first touched each page: ${root.value} pages (${size(root.value * PAGE)}). Each bar is a function, as wide as the pages ` +
    'first touched under it, its callers below it; the colours only tell the bars apart. Click a bar to look inside it.';
  view.flameRows = rows;
}

// ---- controls ----

function setupSpace(index) {
  view.space = view.model.spaces[index];
  const s = view.space;
  const counts = new Map();
  for (const c of s.cols) if (c.step) counts.set(c.step.syscall, (counts.get(c.step.syscall) || 0) + 1);
  view.calls = null;
  $('calls').innerHTML = 'Calls ' + [...counts].sort().map(([name, n]) =>
    `<label><input type="checkbox" value="${esc(name)}" checked> ${esc(name)} (${n})</label>`).join('');
  const tids = [...s.threads].sort((a, b) => a - b);
  $('thread').innerHTML = '<option value="">all</option>' + tids.map((t) => `<option value="${t}">${t}${t === s.pid ? ' (main)' : s.parents.has(t) ? ' (started by ' + s.parents.get(t) + ')' : ''}</option>`).join('');
  view.thread = '';
  view.flameRoot = [];
  view.flameAt = null;
  $('view-flame').disabled = s.resident.length === 0;
  if (view.flame && s.resident.length === 0) showFlame(false);
  redraw(0);
}

function redraw(selCol) {
  spaceColumns();
  drawSpace();
  drawCounters();
  drawSteps();
  const p = selCol == null ? 0 : Math.max(0, firstPos(selCol) - (view.cols[firstPos(selCol)] === selCol ? 0 : 1));
  select(Math.min(p, view.cols.length - 1));
}

function parseAddr(text) {
  const t = text.trim().toLowerCase();
  if (!t) return null;
  const n = t.startsWith('0x') ? parseInt(t.slice(2), 16) : parseInt(t, 16);
  return Number.isFinite(n) ? n : NaN;
}

function zoomTo(lo, hi) {
  $('error').hidden = true;
  view.lo = lo; view.hi = hi;
  $('lo').value = lo == null ? '' : hex(lo);
  $('hi').value = hi == null ? '' : hex(hi);
  const c = view.cols[view.sel];
  drawSpace(); drawCounters();
  select(firstPos(c), false);
}

function setupControls() {
  $('space').addEventListener('change', (ev) => setupSpace(Number(ev.target.value)));
  $('thread').addEventListener('change', (ev) => { view.thread = ev.target.value; redraw(view.cols[view.sel]); });
  $('calls').addEventListener('change', () => {
    const on = [...$('calls').querySelectorAll('input:checked')].map((i) => i.value);
    const all = $('calls').querySelectorAll('input').length;
    view.calls = on.length === all ? null : new Set(on);
    redraw(view.cols[view.sel]);
  });
  for (const r of document.querySelectorAll('input[name=axis]')) {
    r.addEventListener('change', (ev) => { view.axis = ev.target.value; zoomTo(view.lo, view.hi); });
  }
  $('zoom').addEventListener('click', () => {
    const lo = parseAddr($('lo').value), hi = parseAddr($('hi').value);
    if (Number.isNaN(lo) || Number.isNaN(hi) || (lo != null && hi != null && lo >= hi)) {
      $('error').hidden = false;
      $('error').textContent = 'Type two hexadecimal addresses, the lowest first: from 0x7f0000000000 to 0x7fffffffffff, say (either may be left empty).';
      return;
    }
    $('error').hidden = true;
    zoomTo(lo, hi);
  });
  $('unzoom').addEventListener('click', () => zoomTo(null, null));
  $('view-space').addEventListener('click', () => showFlame(false));
  $('view-flame').addEventListener('click', () => showFlame(true));
  $('flame-peak').addEventListener('click', () => {
    // The most pages at one stop: each resident event is one.
    const s = view.space;
    let best = -1;
    s.resident.forEach((r, i) => { if (r.when !== 'ended' && (best < 0 || r.pages > s.resident[best].pages)) best = i; });
    if (best >= 0) showCol(s.resident[best].col, best);
  });
  $('flame-exit').addEventListener('click', () => showCol(view.space.cols.length - 1));
  $('flame-root').addEventListener('click', () => { view.flameRoot = []; drawFlame(); });
  $('flame').addEventListener('click', (ev) => {
    const r = ev.target.closest('rect');
    if (!r) return;
    const row = view.flameRows[[...$('flame').querySelectorAll('rect')].indexOf(r)];
    const path = [];
    for (let d = row.depth, x = row.x; d > 0; d--) {
      const anc = view.flameRows.find((q) => q.depth === d && q.x <= x + 0.01 && x < q.x + q.w);
      if (anc) path.unshift(anc.node.name);
    }
    view.flameRoot = view.flameRoot.concat(path);
    drawFlame();
  });
  $('steps').addEventListener('click', (ev) => {
    const row = ev.target.closest('div[data-pos]');
    if (row) select(Number(row.dataset.pos), false);
  });
  const chart = $('space-chart');
  let drag = null;
  // The pointer in the drawing's own coordinates (the SVG scales it to the page's width).
  const local = (ev) => {
    const pt = new DOMPoint(ev.clientX, ev.clientY).matrixTransform(chart.getScreenCTM().inverse());
    return [pt.x - GUTTER, pt.y];
  };
  chart.addEventListener('mousedown', (ev) => { drag = local(ev); });
  chart.addEventListener('mousemove', (ev) => {
    const [px, py] = local(ev);
    if (drag && Math.abs(py - drag[1]) > 5) {
      const d = $('drag');
      d.setAttribute('visibility', 'visible');
      d.setAttribute('y', Math.min(py, drag[1]));
      d.setAttribute('height', Math.abs(py - drag[1]));
    }
    tip(ev, px, py);
  });
  chart.addEventListener('mouseleave', () => { $('tip').hidden = true; });
  window.addEventListener('mouseup', (ev) => {
    if (!drag) return;
    const [px, py] = local(ev);
    const start = drag;
    drag = null;
    $('drag').setAttribute('visibility', 'hidden');
    if (Math.abs(py - start[1]) > 5) {
      const a = view.y.addr(Math.max(py, start[1])), b = view.y.addr(Math.min(py, start[1]));
      if (a != null && b != null && b > a) zoomTo(Math.floor(a / PAGE) * PAGE, Math.ceil(b / PAGE) * PAGE);
    } else if (px >= 0 && px <= view.chart.plotW) {
      select(view.x.pos(px));
    }
  });
  document.addEventListener('keydown', (ev) => {
    // Keys typed into a text field or a menu are theirs; after a click on a box they move.
    if (ev.target.matches('input:not([type=checkbox]):not([type=radio]), select, textarea') ||
      ev.altKey || ev.ctrlKey || ev.metaKey) return;
    const n = ev.shiftKey ? 10 : 1;
    const moves = {
      ArrowRight: view.sel + n, ArrowDown: view.sel + n, j: view.sel + 1, ArrowLeft: view.sel - n,
      ArrowUp: view.sel - n, k: view.sel - 1, Home: 0, End: view.cols.length - 1,
      PageDown: view.sel + 10, PageUp: view.sel - 10,
    };
    if (ev.key === '/') { ev.preventDefault(); $('lo').focus(); return; }
    if (!(ev.key in moves)) return;
    ev.preventDefault();
    select(moves[ev.key]);
  });
  let resize = null;
  window.addEventListener('resize', () => {
    clearTimeout(resize);
    resize = setTimeout(() => zoomTo(view.lo, view.hi), 150);
  });
}

// Selects column `c` (every call shown again if a filter hid it); for the flame graph, up
// to resident event `at` in it.
function showCol(c, at = null) {
  if (view.pos[c] < 0) {
    view.calls = null; view.thread = ''; $('thread').value = '';
    for (const box of $('calls').querySelectorAll('input')) box.checked = true;
    redraw(c);
  }
  view.flameRoot = [];
  select(view.pos[c]);
  view.flameAt = at;
  if (view.flame) drawFlame();
}

function showFlame(on) {
  view.flame = on;
  $('space-view').hidden = on;
  $('flame-view').hidden = !on;
  $('view-space').classList.toggle('on', !on);
  $('view-flame').classList.toggle('on', on);
  if (on) drawFlame(); else zoomTo(view.lo, view.hi);
}

function tip(ev, px, py) {
  const t = $('tip');
  if (px < 0 || px > view.chart.plotW || py > view.chart.height) { t.hidden = true; return; }
  const p = view.x.pos(px), c = view.cols[p], s = view.space;
  const a = view.y.addr(py);
  let text = stepText(c);
  if (a != null) {
    const l = s.vmas.find((v) => v.from <= c && c < v.to && v.start <= a && a < v.end);
    text += '\n' + (l ? vmaLine(l) + (l.from > 0 ? `\n  added by #${s.cols[l.from].step.step}` : '') +
      (l.to < Infinity ? `, removed by #${s.cols[l.to].step.step}` : '') : hex(Math.floor(a)) + ': unmapped');
  }
  t.textContent = text;
  t.hidden = false;
  t.style.left = Math.min(ev.clientX + 14, window.innerWidth - t.offsetWidth - 8) + 'px';
  t.style.top = (ev.clientY + 14) + 'px';
}

// ---- start ----

async function main() {
  const events = await readTrace();
  const model = buildModel(events);
  view.model = model;
  if (!model.spaces.length) throw new Error('the trace has no exec or attach event');
  const sum = model.summary;
  const parts = [`${model.steps} steps`, `${model.spaces.length} address space${model.spaces.length > 1 ? 's' : ''}`];
  if (sum) {
    parts.push(Object.entries(sum.calls).map(([k, v]) => `${k} ${v}`).join(', ') || 'no memory calls');
    parts.push(`peak heap ${size(sum.peak_heap_bytes)}, peak anonymous mappings ${size(sum.peak_anon_bytes)}, peak RssAnon ${size(sum.peak_rss_anon_bytes)}`);
    if (sum.exit_code != null) parts.push(`exit status ${sum.exit_code}`);
    if (sum.signal != null) parts.push(`killed by signal ${sum.signal}`);
  }
  const src = model.spaces[0].start.source;
  if (src) parts.push(`read through ${src === 'module' ? '/dev/mmscope' : 'procfs'}`);
  $('summary').textContent = parts.join(' · ');
  $('summary').dataset.steps = model.steps;
  $('space').innerHTML = model.spaces.map((s, i) =>
    `<option value="${i}">pid ${s.pid}: ${esc(s.name || s.how)} (${s.cols.length - 1} steps)</option>`).join('');
  setupControls();
  setupSpace(0);
  const wanted = /^#step=(\d+)$/.exec(location.hash);
  if (wanted) {
    // The step, in whichever process made it.
    model.spaces.some((s, i) => {
      const c = s.cols.findIndex((col) => col.step && col.step.step === Number(wanted[1]));
      if (c <= 0) return false;
      if (i > 0) { $('space').value = i; setupSpace(i); }
      select(view.pos[c]);
      return true;
    });
  }
  document.body.dataset.readyAt = Math.round(performance.now());
  document.body.dataset.ready = '1';
}

window.mmscope = { view, select: (p) => select(p), showCol };
main().catch((e) => {
  $('error').hidden = false;
  $('error').textContent = 'This page could not show the trace: ' + e.message;
  console.error(e);
  document.body.dataset.ready = 'error';
});
