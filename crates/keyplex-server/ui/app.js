// keyplex operator dashboard: the admin API (/admin/v1/…) drawn as tiles, SVG charts and
// tables. No library, no build step; every string from the API reaches the DOM through
// textContent or an SVG attribute, never through innerHTML.
//
// Hooks for automated checks (tests/browser/dashboard.mjs): `window.keyplexDashboard`
// ({lastStats, lastUpdate, errors, polls}), each chart's <svg data-points="…"> (non-zero bars
// drawn), the tiles' ids (text content: the number), `#contents tbody tr[data-content-id]`.
'use strict';

(function () {
  const POLL_MS = 2000;
  const SEARCH_DEBOUNCE_MS = 250;
  const PAGE = 50;
  const TOKEN_KEY = 'keyplex.adminToken';
  const SVG_NS = 'http://www.w3.org/2000/svg';

  const dashboard = { lastStats: null, lastUpdate: null, errors: [], polls: 0 };
  window.keyplexDashboard = dashboard;

  const $ = (id) => document.getElementById(id);
  const state = {
    token: null,
    tenant: '',
    window: 900,
    pollTimer: null,
    pollSeq: 0,
    inFlight: null,
    contents: { seq: 0, search: '', next: null, selected: null, timer: null },
    keysSeq: 0,
  };

  // ---- colours: one per interface / DRM name, the same in every chart ----------------------

  const COLOURS = {
    cpix: '#2a6fdb', speke: '#f39c12', nagra: '#8e24aa', harmonic: '#00897b', get_cpix: '#6d4c41',
    widevine_api: '#d81b60', clearkey: '#00897b', hls: '#2a6fdb', widevine: '#f39c12',
    playready: '#8e24aa', fairplay: '#6d4c41', prm: '#d81b60', created: '#2a6fdb', served: '#7cb342',
  };
  const SPARE = ['#3949ab', '#00acc1', '#fb8c00', '#5e35b1', '#43a047', '#e53935', '#546e7a', '#c0ca33'];
  const ORDER = ['cpix', 'speke', 'nagra', 'harmonic', 'get_cpix', 'widevine_api',
    'clearkey', 'hls', 'widevine', 'playready', 'fairplay', 'prm'];
  const LABELS = { get_cpix: 'GET CPIX', widevine_api: 'Widevine API', cpix: 'CPIX', speke: 'SPEKE',
    nagra: 'NAGRA', harmonic: 'Harmonic', clearkey: 'ClearKey', hls: 'HLS AES-128', widevine: 'Widevine',
    playready: 'PlayReady', fairplay: 'FairPlay', prm: 'PRM' };

  function colour(name) {
    if (COLOURS[name]) return COLOURS[name];
    let h = 0;
    for (const c of String(name)) h = (h * 31 + c.charCodeAt(0)) >>> 0;
    return SPARE[h % SPARE.length];
  }
  const label = (name) => LABELS[name] || String(name);
  const byKnownOrder = (a, b) => {
    const ia = ORDER.indexOf(a), ib = ORDER.indexOf(b);
    if (ia !== ib) return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib);
    return a < b ? -1 : a > b ? 1 : 0;
  };

  // ---- small helpers -----------------------------------------------------------------------

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    if (props) {
      for (const [k, v] of Object.entries(props)) {
        if (v === undefined || v === null) continue;
        if (k === 'className') node.className = v;
        else if (k === 'text') node.textContent = v;
        else if (k === 'dataset') Object.assign(node.dataset, v);
        else node.setAttribute(k, v);
      }
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  const sum = (map) => Object.values(map || {}).reduce((a, v) => a + (Number(v) || 0), 0);
  const pad = (n) => String(n).padStart(2, '0');

  function clock(unixSeconds, withSeconds) {
    const d = new Date(unixSeconds * 1000);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}` + (withSeconds ? `:${pad(d.getSeconds())}` : '');
  }

  function dateTime(rfc3339) {
    if (!rfc3339) return '—';
    const d = new Date(rfc3339);
    if (Number.isNaN(d.getTime())) return String(rfc3339);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function windowLabel(seconds) {
    return { 300: '5 min', 900: '15 min', 3600: '1 h', 21600: '6 h', 86400: '24 h' }[seconds] || `${seconds} s`;
  }

  function ms(value) {
    if (value === null || value === undefined || Number.isNaN(Number(value))) return '—';
    const v = Number(value);
    return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
  }

  function noteError(text) {
    dashboard.errors.push({ at: new Date().toISOString(), text });
    if (dashboard.errors.length > 50) dashboard.errors.splice(0, dashboard.errors.length - 50);
  }

  // ---- the admin API -----------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function api(path, { token = state.token, signal } = {}) {
    let response;
    try {
      response = await fetch(path, {
        headers: { Authorization: `Bearer ${token}`, Accept: 'application/json' },
        cache: 'no-store',
        // The token is the only credential: no cookies, and no browser sign-in dialog on a
        // 401 with a Basic challenge (browsers prompt only for requests with credentials).
        credentials: 'omit',
        signal,
      });
    } catch (e) {
      if (e && e.name === 'AbortError') throw e;
      throw new ApiError(0, `keyplex is unreachable (${e && e.message ? e.message : e})`);
    }
    if (!response.ok) {
      let detail = '';
      try {
        const problem = await response.json();
        detail = [problem.title, problem.detail].filter(Boolean).join(': ');
      } catch (_) { /* not problem+json */ }
      throw new ApiError(response.status, `HTTP ${response.status}${detail ? ' — ' + detail : ''}`);
    }
    return response.json();
  }

  // ---- login -------------------------------------------------------------------------------

  function showLogin(message) {
    stopPolling();
    $('dashboard').hidden = true;
    $('controls').hidden = true;
    $('login').hidden = false;
    const error = $('login-error');
    error.textContent = message || '';
    error.hidden = !message;
    $('token').value = '';
    $('token').focus();
  }

  async function signIn(token, { fromStorage = false } = {}) {
    const submit = $('login-submit');
    submit.disabled = true;
    try {
      const answer = await api('/admin/v1/tenants', { token });
      state.token = token;
      sessionStorage.setItem(TOKEN_KEY, token);
      $('login').hidden = true;
      $('login-error').hidden = true;
      showDashboard(answer.tenants || []);
    } catch (e) {
      sessionStorage.removeItem(TOKEN_KEY);
      state.token = null;
      let message;
      if (e.status === 401) {
        message = fromStorage ? 'Your session has ended: sign in again.'
          : 'Wrong admin token: keyplex answered 401 Unauthorized.';
      } else if (e.status === 403) {
        message = 'This token is not allowed to use the admin API (403 Forbidden).';
      } else {
        message = `Cannot sign in: ${e.message}`;
      }
      showLogin(message);
    } finally {
      submit.disabled = false;
    }
  }

  function logOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = null;
    dashboard.lastStats = null;
    clearContents();
    showLogin(message);
  }

  // ---- dashboard: controls and polling -----------------------------------------------------

  function readHash() {
    const params = new URLSearchParams(location.hash.slice(1));
    const win = Number(params.get('window'));
    if ([300, 900, 3600, 21600, 86400].includes(win)) state.window = win;
    if (params.has('tenant')) state.tenant = params.get('tenant');
  }

  function writeHash() {
    const params = new URLSearchParams();
    if (state.tenant) params.set('tenant', state.tenant);
    params.set('window', String(state.window));
    history.replaceState(null, '', '#' + params.toString());
  }

  function showDashboard(tenants) {
    const select = $('tenant');
    while (select.options.length > 1) select.remove(1);
    const ids = tenants.map((t) => t.id).sort();
    for (const tenant of tenants.slice().sort((a, b) => (a.id < b.id ? -1 : 1))) {
      const option = el('option', { value: tenant.id, text: tenant.id + (tenant.disabled ? ' (disabled)' : '') });
      select.append(option);
    }
    if (state.tenant && !ids.includes(state.tenant)) state.tenant = '';
    select.value = state.tenant;
    $('window').value = String(state.window);
    $('controls').hidden = false;
    $('dashboard').hidden = false;
    scopeChanged();
  }

  function scopeChanged() {
    writeHash();
    $('scope').textContent = `${state.tenant || 'All tenants'} · last ${windowLabel(state.window)}`;
    dashboard.lastStats = null;
    resetContents();
    startPolling();
  }

  function startPolling() {
    stopPolling();
    poll();
    state.pollTimer = setInterval(poll, POLL_MS);
  }

  function stopPolling() {
    if (state.pollTimer) clearInterval(state.pollTimer);
    state.pollTimer = null;
    if (state.inFlight) state.inFlight.abort();
    state.inFlight = null;
  }

  async function poll() {
    if (!state.token) return;
    if (state.inFlight) return; // the previous answer is still on its way
    if (document.hidden && dashboard.lastStats) return; // a background tab: no polling
    const seq = ++state.pollSeq;
    const controller = new AbortController();
    state.inFlight = controller;
    const query = new URLSearchParams({ window: String(state.window) });
    if (state.tenant) query.set('tenant', state.tenant);
    try {
      const stats = await api(`/admin/v1/stats?${query}`, { signal: controller.signal });
      if (seq !== state.pollSeq) return;
      dashboard.lastStats = stats;
      dashboard.lastUpdate = new Date().toISOString();
      dashboard.polls += 1;
      render(stats);
      $('poll-error').hidden = true;
      $('live').className = 'live ok';
      $('updated').textContent = `updated ${clock(Date.now() / 1000, true)}`;
    } catch (e) {
      if (e && e.name === 'AbortError') return;
      if (e.status === 401) {
        logOut('The admin token is no longer accepted (401): sign in again.');
        return;
      }
      noteError(`stats: ${e.message}`);
      $('live').className = 'live failing';
      const banner = $('poll-error');
      banner.textContent = `Cannot load statistics: ${e.message}`;
      banner.hidden = false;
    } finally {
      if (state.inFlight === controller) state.inFlight = null;
    }
  }

  // ---- rendering the stats -----------------------------------------------------------------

  function setTile(id, value, sub) {
    $(id).textContent = String(value);
    const subEl = $(id + '-sub');
    if (subEl) {
      subEl.textContent = sub || '';
      subEl.title = sub || '';
    }
  }

  function breakdown(map) {
    return Object.keys(map || {}).filter((k) => Number(map[k]) > 0).sort(byKnownOrder)
      .map((k) => `${label(k)} ${map[k]}`).join(' · ');
  }

  // Series names found in one member of every bucket (and the totals), in a stable order.
  function seriesNames(stats, member) {
    const names = new Set(Object.keys((stats.totals || {})[member] || {}));
    for (const b of stats.buckets || []) for (const k of Object.keys(b[member] || {})) names.add(k);
    return [...names].sort(byKnownOrder);
  }

  function series(stats, member, { names, negative = false, suffix = '' } = {}) {
    return (names || seriesNames(stats, member)).map((name) => ({
      name: label(name) + suffix,
      colour: colour(name),
      negative,
      values: (stats.buckets || []).map((b) => Number((b[member] || {})[name]) || 0),
    }));
  }

  function render(stats) {
    const totals = stats.totals || {};
    const served = sum(totals.keys_served);
    setTile('tile-key-requests', sum(totals.key_requests), breakdown(totals.key_requests));
    setTile('tile-keys-created', sum(totals.keys_created), `${served} served from the store`);
    setTile('tile-licences-granted', sum(totals.licences_granted), breakdown(totals.licences_granted));
    setTile('tile-licences-denied', sum(totals.licences_denied), breakdown(totals.licences_denied));
    setTile('tile-errors', sum(totals.errors), breakdown(totals.errors));
    $('tile-sessions').textContent = String(Number(stats.active_sessions) || 0);

    const drms = [...new Set([...seriesNames(stats, 'licences_granted'), ...seriesNames(stats, 'licences_denied')])]
      .sort(byKnownOrder);
    const created = series(stats, 'keys_created');
    const servedSeries = series(stats, 'keys_served');
    const combine = (list, name, key) => ({
      name, colour: COLOURS[key], negative: false,
      values: (stats.buckets || []).map((_, i) => list.reduce((a, s) => a + s.values[i], 0)),
    });

    drawChart($('chart-key-requests'), stats, series(stats, 'key_requests'));
    drawChart($('chart-keys'), stats, [combine(created, 'created', 'created'), combine(servedSeries, 'served from store', 'served')]);
    drawChart($('chart-licences'), stats, [
      ...series(stats, 'licences_granted', { names: drms, suffix: ' granted' }),
      ...series(stats, 'licences_denied', { names: drms, negative: true, suffix: ' denied' }),
    ], { legendGroups: drms });
    drawChart($('chart-errors'), stats, series(stats, 'errors'));
    renderLatency(stats.latency_ms || {});
  }

  function renderLatency(latency) {
    const body = $('latency').tBodies[0];
    body.replaceChildren();
    const names = Object.keys(latency).filter((k) => latency[k] && Number(latency[k].count) > 0).sort(byKnownOrder);
    if (!names.length) {
      body.append(el('tr', null, el('td', { colspan: 5, className: 'empty', text: 'No requests in this window.' })));
      return;
    }
    for (const name of names) {
      const l = latency[name];
      const swatch = el('span', { className: 'swatch' });
      swatch.style.background = colour(name);
      body.append(el('tr', { dataset: { interface: name } },
        el('td', null, el('span', { className: 'legend' }, el('span', { className: 'item' }, swatch, label(name)))),
        el('td', { className: 'num', text: String(l.count) }),
        el('td', { className: 'num', text: ms(l.p50) }),
        el('td', { className: 'num', text: ms(l.p90) }),
        el('td', { className: 'num', text: ms(l.p99) })));
    }
  }

  // A step of 1, 2 or 5 × 10^n (whole numbers: these are counts) giving at most `maxTicks` steps.
  function niceStep(max, maxTicks) {
    const raw = Math.max(1, max) / maxTicks;
    const exp = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const m of [1, 2, 5, 10]) if (m * exp >= raw) return Math.max(1, Math.ceil(m * exp));
    return Math.max(1, Math.ceil(10 * exp));
  }

  const TIME_STEPS = [10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200];

  // A stacked bar chart: one bar per bucket, one segment per series; `negative` series stack
  // below the axis. Sets data-points on the <svg> to the number of non-zero segments drawn.
  function drawChart(container, stats, list, { legendGroups } = {}) {
    const plot = container.querySelector('.plot');
    const buckets = stats.buckets || [];
    const bucketSeconds = Number(stats.bucket_seconds) || 10;
    const width = Math.max(240, plot.clientWidth || 480);
    const height = Math.max(120, plot.clientHeight || 220);
    const m = { top: 8, right: 8, bottom: 22, left: 40 };
    const innerW = width - m.left - m.right;
    const innerH = height - m.top - m.bottom;
    const n = Math.max(1, buckets.length);

    const up = buckets.map((_, i) => list.filter((s) => !s.negative).reduce((a, s) => a + s.values[i], 0));
    const down = buckets.map((_, i) => list.filter((s) => s.negative).reduce((a, s) => a + s.values[i], 0));
    const hasNegative = list.some((s) => s.negative);
    const maxUp = Math.max(0, ...up);
    const maxDown = Math.max(0, ...down);
    const step = niceStep(maxUp + maxDown, 4);
    const top = Math.max(step, Math.ceil(maxUp / step) * step);
    const bottom = hasNegative ? Math.max(step, Math.ceil(maxDown / step) * step) : 0;
    const y = (v) => m.top + innerH * (top - v) / (top + bottom);
    const bw = innerW / n;
    const gap = bw >= 6 ? Math.min(3, bw * 0.2) : bw >= 3 ? 1 : 0;

    const root = svg('svg', { viewBox: `0 0 ${width} ${height}`, width, height, role: 'img',
      'aria-label': container.querySelector('h2').textContent });

    // Horizontal grid and value labels.
    for (let v = -bottom; v <= top + 1e-9; v += step) {
      const yy = Math.round(y(v)) + 0.5;
      root.append(svg('line', { class: v === 0 ? 'axis' : 'grid', x1: m.left, x2: m.left + innerW, y1: yy, y2: yy }));
      root.append(svg('text', { class: 'label', x: m.left - 6, y: yy + 4, 'text-anchor': 'end' }, String(Math.abs(v))));
    }

    // Time labels, at round times.
    if (buckets.length) {
      const t0 = Number(buckets[0].t);
      const t1 = t0 + buckets.length * bucketSeconds;
      const maxLabels = Math.max(2, Math.floor(innerW / 70));
      const tStep = TIME_STEPS.find((s) => (t1 - t0) / s <= maxLabels) || 86400;
      const x = (t) => m.left + innerW * (t - t0) / (t1 - t0);
      for (let t = Math.ceil(t0 / tStep) * tStep; t <= t1; t += tStep) {
        const xx = Math.round(x(t)) + 0.5;
        root.append(svg('line', { class: 'axis', x1: xx, x2: xx, y1: m.top + innerH, y2: m.top + innerH + 4 }));
        root.append(svg('text', { class: 'label', x: xx, y: height - 6, 'text-anchor': 'middle' }, clock(t, tStep < 60)));
      }
    }
    root.append(svg('line', { class: 'axis', x1: m.left + 0.5, x2: m.left + 0.5, y1: m.top, y2: m.top + innerH }));

    // The bars.
    let points = 0;
    const bars = svg('g', { class: 'bars' });
    buckets.forEach((_, i) => {
      const x = m.left + i * bw + gap / 2;
      let above = 0, below = 0;
      for (const s of list) {
        const v = s.values[i];
        if (!(v > 0)) continue;
        points += 1;
        let y1, y2;
        if (s.negative) { y1 = y(-below); below += v; y2 = y(-below); }
        else { y2 = y(above); above += v; y1 = y(above); }
        bars.append(svg('rect', {
          class: 'bar' + (s.negative ? ' denied' : ''), x: x.toFixed(2), y: Math.min(y1, y2).toFixed(2),
          width: Math.max(1, bw - gap).toFixed(2), height: Math.max(1, Math.abs(y2 - y1)).toFixed(2), fill: s.colour,
        }));
      }
    });
    root.append(bars);
    if (!points) {
      root.append(svg('text', { class: 'empty', x: m.left + innerW / 2, y: m.top + innerH / 2, 'text-anchor': 'middle' },
        'Nothing in this window yet'));
    }
    root.setAttribute('data-points', String(points));

    // Hover: a cursor column and the tooltip with the bucket's values.
    const cursor = svg('rect', { class: 'cursor', x: 0, y: m.top, width: Math.max(1, bw), height: innerH, visibility: 'hidden' });
    root.append(cursor);
    const hit = svg('rect', { x: m.left, y: m.top, width: innerW, height: innerH, fill: 'transparent' });
    root.append(hit);
    hit.addEventListener('mousemove', (event) => {
      const box = root.getBoundingClientRect();
      const px = (event.clientX - box.left) * (width / box.width);
      const i = Math.min(buckets.length - 1, Math.max(0, Math.floor((px - m.left) / bw)));
      if (!buckets.length) return;
      cursor.setAttribute('x', (m.left + i * bw).toFixed(2));
      cursor.setAttribute('visibility', 'visible');
      showTooltip(event, Number(buckets[i].t), bucketSeconds, list.map((s) => ({ name: s.name, colour: s.colour, value: s.values[i], negative: s.negative })));
    });
    hit.addEventListener('mouseleave', () => {
      cursor.setAttribute('visibility', 'hidden');
      $('tooltip').hidden = true;
    });

    plot.replaceChildren(root);
    renderLegend(container.querySelector('.legend'), list, legendGroups);
  }

  function renderLegend(legend, list, groups) {
    legend.replaceChildren();
    if (!list.length) {
      legend.append(el('span', { className: 'none', text: 'no traffic in this window' }));
      return;
    }
    const item = (name, swatchColour, value, denied) => {
      const swatch = el('span', { className: 'swatch' + (denied ? ' denied' : '') });
      swatch.style.background = swatchColour;
      return el('span', { className: 'item' }, swatch, name, el('span', { className: 'value', text: String(value) }));
    };
    if (groups) {
      // Licences: one entry per DRM, with granted / denied totals.
      for (const drm of groups) {
        const granted = list.find((s) => s.name === label(drm) + ' granted');
        const denied = list.find((s) => s.name === label(drm) + ' denied');
        const g = granted ? granted.values.reduce((a, v) => a + v, 0) : 0;
        const d = denied ? denied.values.reduce((a, v) => a + v, 0) : 0;
        legend.append(item(label(drm), colour(drm), `${g} granted / ${d} denied`));
      }
      return;
    }
    for (const s of list) legend.append(item(s.name, s.colour, s.values.reduce((a, v) => a + v, 0), s.negative));
  }

  function showTooltip(event, t, bucketSeconds, rows) {
    const tip = $('tooltip');
    tip.replaceChildren(el('div', { className: 'when', text: `${clock(t, true)} – ${clock(t + bucketSeconds, true)}` }));
    const shown = rows.filter((r) => r.value > 0);
    if (!shown.length) tip.append(el('div', { className: 'row', text: 'nothing' }));
    for (const r of shown) {
      const swatch = el('span', { className: 'swatch' });
      swatch.style.background = r.colour;
      if (r.negative) swatch.style.opacity = '0.55';
      tip.append(el('div', { className: 'row' }, swatch, r.name, el('span', { className: 'v', text: String(r.value) })));
    }
    tip.hidden = false;
    const w = tip.offsetWidth, h = tip.offsetHeight;
    // In page coordinates (position: absolute), kept inside the visible part of the page.
    let left = event.clientX + 14, top = event.clientY + 14;
    if (left + w > document.documentElement.clientWidth - 4) left = event.clientX - w - 14;
    if (top + h > window.innerHeight - 4) top = event.clientY - h - 14;
    tip.style.left = `${Math.max(4, left) + window.scrollX}px`;
    tip.style.top = `${Math.max(4, top) + window.scrollY}px`;
  }

  // ---- contents and keys ------------------------------------------------------------------

  function clearContents() {
    state.contents.seq += 1;
    state.contents.next = null;
    state.contents.selected = null;
    $('contents').tBodies[0].replaceChildren();
    $('contents').dataset.loaded = 'false';
    $('contents-more').hidden = true;
    $('keys-card').hidden = true;
    $('keys').tBodies[0].replaceChildren();
  }

  function resetContents() {
    clearContents();
    const search = $('content-search');
    const hint = $('contents-hint');
    $('contents-tenant').textContent = state.tenant ? `of ${state.tenant}` : '';
    if (!state.tenant) {
      search.disabled = true;
      search.value = '';
      hint.textContent = 'Select a tenant to browse its contents.';
      hint.hidden = false;
      return;
    }
    search.disabled = false;
    hint.hidden = true;
    loadContents(false);
  }

  function contentsUrl(after) {
    const query = new URLSearchParams({ search: state.contents.search, limit: String(PAGE) });
    if (after) query.set('after', after);
    return `/admin/v1/tenants/${encodeURIComponent(state.tenant)}/contents?${query}`;
  }

  async function loadContents(more) {
    if (!state.tenant) return;
    const seq = more ? state.contents.seq : ++state.contents.seq;
    const tenant = state.tenant;
    const hint = $('contents-hint');
    const moreButton = $('contents-more');
    moreButton.disabled = true;
    try {
      const answer = await api(contentsUrl(more ? state.contents.next : null));
      if (seq !== state.contents.seq || tenant !== state.tenant) return;
      const body = $('contents').tBodies[0];
      if (!more) body.replaceChildren();
      for (const content of answer.contents || []) body.append(contentRow(content));
      state.contents.next = answer.next || null;
      moreButton.hidden = !state.contents.next;
      // Which search the rows answer (for automated checks; the box may already say more).
      $('contents').dataset.search = state.contents.search;
      $('contents').dataset.loaded = 'true';
      if (!body.rows.length) {
        hint.textContent = state.contents.search ? `No content id contains “${state.contents.search}”.`
          : 'This tenant has no contents yet.';
        hint.hidden = false;
      } else {
        hint.hidden = true;
      }
    } catch (e) {
      if (seq !== state.contents.seq) return;
      if (e.status === 401) { logOut('The admin token is no longer accepted (401): sign in again.'); return; }
      noteError(`contents: ${e.message}`);
      hint.textContent = `Cannot load contents: ${e.message}`;
      hint.hidden = false;
    } finally {
      moreButton.disabled = false;
    }
  }

  function contentRow(content) {
    const id = String(content.content_id);
    const row = el('tr', { tabindex: 0, dataset: { contentId: id } },
      el('td', { className: 'mono', text: id }),
      el('td', { className: 'num', text: String(content.keys ?? '') }),
      el('td', { text: dateTime(content.first_key_at), title: content.first_key_at || '' }),
      el('td', { text: dateTime(content.last_key_at), title: content.last_key_at || '' }));
    if (id === state.contents.selected) row.classList.add('selected');
    row.addEventListener('click', () => selectContent(id, row));
    row.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' || event.key === ' ') { event.preventDefault(); selectContent(id, row); }
    });
    return row;
  }

  async function selectContent(id, row) {
    state.contents.selected = id;
    for (const r of $('contents').tBodies[0].rows) r.classList.toggle('selected', r === row);
    const seq = ++state.keysSeq;
    const tenant = state.tenant;
    const body = $('keys').tBodies[0];
    $('keys-content').textContent = id;
    $('keys-card').hidden = false;
    $('keys').dataset.contentId = id;
    $('keys').dataset.loaded = 'false';
    body.replaceChildren(el('tr', null, el('td', { colspan: 5, className: 'empty', text: 'Loading…' })));
    try {
      const answer = await api(`/admin/v1/tenants/${encodeURIComponent(tenant)}/contents/${encodeURIComponent(id)}/keys`);
      if (seq !== state.keysSeq) return;
      body.replaceChildren();
      for (const key of answer.keys || []) {
        const origin = String(key.origin ?? '');
        body.append(el('tr', { dataset: { kid: String(key.kid) } },
          el('td', { className: 'mono', text: String(key.kid) }),
          el('td', { text: key.track_type == null ? 'all tracks' : String(key.track_type) }),
          el('td', { className: 'num', text: key.period == null ? '—' : String(key.period) }),
          el('td', null, el('span', { className: `badge ${origin === 'generated' || origin === 'supplied' ? origin : ''}`, text: origin })),
          el('td', { text: dateTime(key.created_at), title: key.created_at || '' })));
      }
      if (!body.rows.length) body.append(el('tr', null, el('td', { colspan: 5, className: 'empty', text: 'No keys.' })));
      $('keys').dataset.loaded = 'true';
    } catch (e) {
      if (seq !== state.keysSeq) return;
      if (e.status === 401) { logOut('The admin token is no longer accepted (401): sign in again.'); return; }
      noteError(`keys: ${e.message}`);
      body.replaceChildren(el('tr', null, el('td', { colspan: 5, className: 'empty', text: `Cannot load keys: ${e.message}` })));
    }
  }

  // ---- wiring ------------------------------------------------------------------------------

  $('login-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const token = $('token').value.trim();
    if (token) signIn(token);
  });
  $('logout').addEventListener('click', () => logOut(''));
  $('tenant').addEventListener('change', (event) => {
    state.tenant = event.target.value;
    state.contents.search = '';
    $('content-search').value = '';
    scopeChanged();
  });
  $('window').addEventListener('change', (event) => {
    state.window = Number(event.target.value);
    writeHash();
    $('scope').textContent = `${state.tenant || 'All tenants'} · last ${windowLabel(state.window)}`;
    dashboard.lastStats = null;
    startPolling();
  });
  $('content-search').addEventListener('input', (event) => {
    clearTimeout(state.contents.timer);
    const value = event.target.value.trim();
    state.contents.timer = setTimeout(() => {
      if (value === state.contents.search) return;
      state.contents.search = value;
      clearContents();
      loadContents(false);
    }, SEARCH_DEBOUNCE_MS);
  });
  $('contents-more').addEventListener('click', () => loadContents(true));

  document.addEventListener('visibilitychange', () => { if (!document.hidden && state.token) poll(); });

  let resizeTimer = null;
  window.addEventListener('resize', () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => { if (dashboard.lastStats) render(dashboard.lastStats); }, 150);
  });

  readHash();
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) signIn(saved, { fromStorage: true });
  else showLogin('');
})();
