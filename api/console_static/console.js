// Streamwhisk console: keeps the key in sessionStorage (this tab only), sends it as HTTP Basic on every data
// request, and puts what the API renders into the page. No inline script: the pages run under a strict CSP.
(() => {
  'use strict';
  const KEY = 'streamwhisk.key';
  const page = document.body.dataset.page;
  const view = document.getElementById('view');
  const query = new URLSearchParams(location.search);
  class Stop extends Error {}

  const key = () => sessionStorage.getItem(KEY);
  const basic = (k) => 'Basic ' + btoa(k);
  const el = (tag, attrs = {}, ...kids) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    for (const c of kids) e.append(c instanceof Node ? c : document.createTextNode(c == null ? '-' : String(c)));
    return e;
  };
  const iso = (ms) => (typeof ms === 'number' ? new Date(ms).toISOString() : '-');
  const ms = (v) => (typeof v === 'number' ? v.toLocaleString('en') + ' ms' : '-');

  function show401(text) {
    sessionStorage.removeItem(KEY);
    view.replaceChildren(el('div', { class: 'unauthorized', id: 'unauthorized' },
      el('h2', {}, '401 Unauthorized'),
      el('p', {}, text || 'The key was not accepted: it is unknown, blocked or mistyped.'),
      el('a', { href: '/console/login?next=' + encodeURIComponent(location.pathname + location.search) },
        'Log in again')));
  }

  async function showError(r) {
    let msg = r.statusText;
    try { msg = (await r.json()).error || msg; } catch (e) { /* not JSON */ }
    view.replaceChildren(el('div', { class: 'failed', id: 'failed' }, el('h2', {}, `${r.status}`), el('p', {}, msg)));
  }

  async function call(path, k = key()) {
    const r = await fetch(path, { headers: { Authorization: basic(k) }, cache: 'no-store' });
    if (r.status === 401) { show401(); throw new Stop(); }
    if (!r.ok) { await showError(r); throw new Stop(); }
    return r;
  }

  async function fragment(path) {
    view.replaceChildren(el('p', { class: 'loading' }, 'loading...'));
    view.innerHTML = await (await call(path)).text();  // rendered and escaped by api/console.py
  }

  function prefill() {
    for (const input of document.querySelectorAll('form.q input[name]')) {
      if (query.has(input.name)) input.value = query.get(input.name);
    }
  }

  // --- pages ---------------------------------------------------------------------------------------------------

  function login() {
    sessionStorage.removeItem(KEY);  // the "log out" link lands here
    const form = document.getElementById('login');
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const k = document.getElementById('key').value.trim();
      if (!/^[^:\s]+:\S+$/.test(k)) {
        show401('A key looks like uuid:key (the --auth value).');
        return;
      }
      try {
        await call('/console/api/whoami', k);
      } catch (e) {
        if (e instanceof Stop) return;
        throw e;
      }
      sessionStorage.setItem(KEY, k);
      const next = query.get('next') || '';
      location.assign(next.startsWith('/console/') && !next.startsWith('/console/login') ? next : '/console/live');
    });
  }

  function liveRow(a) {
    const tr = el('tr', { class: a.success ? 'ok' : 'err', 'data-id': a.activationId || '' },
      el('td', {}, iso(a.start)),
      el('td', {}, el('a', { href: '/console/activation?id=' + encodeURIComponent(a.activationId) }, a.activationId)),
      el('td', {}, a.name), el('td', { class: 'status' }, a.status), el('td', {}, ms(a.duration)),
      el('td', {}, ms(a.waitTime)), el('td', {}, a.cold ? ms(a.initTime) : 'warm'), el('td', {}, a.kind));
    return tr;
  }

  async function live(namespace) {
    const state = document.getElementById('live-state');
    const body = document.querySelector('#live tbody');
    let first = true;
    for (;;) {
      try {
        const r = await call('/console/api/stream' + (first ? '?last=20' : ''));
        const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let cut;
          while ((cut = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, cut);
            buf = buf.slice(cut + 2);
            let event = 'message', data = '';
            for (const line of block.split('\n')) {
              if (line.startsWith('event: ')) event = line.slice(7);
              else if (line.startsWith('data: ')) data += line.slice(6);
            }
            if (event === 'ready') {
              state.textContent = `streaming the completions of namespace ${namespace} from the log`;
              state.className = 'connected';
            } else if (event === 'activation') {
              const a = JSON.parse(data);
              if (a.activationId && body.querySelector(`tr[data-id="${a.activationId}"]`)) continue;
              body.prepend(liveRow(a));
              while (body.rows.length > 200) body.deleteRow(-1);
            }
          }
        }
      } catch (e) {
        if (e instanceof Stop) return;
      }
      first = false;
      state.textContent = 'disconnected, reconnecting...';
      state.className = 'disconnected';
      await new Promise((ok) => setTimeout(ok, 2000));
    }
  }

  async function activation() {
    const id = query.get('id');
    if (!id) return;
    const a = await (await call('/api/v1/namespaces/_/activations/' + encodeURIComponent(id))).json();
    const ann = Object.fromEntries((a.annotations || []).map((x) => [x.key, x.value]));
    const path = ann.path || `${a.namespace}/${a.name}`;
    const action = path.split('/').slice(1).join('/');
    const resp = a.response || {};
    const rows = [['action', el('a', { href: '/console/action?name=' + encodeURIComponent(action) }, path)],
      ['status', resp.status], ['success', String(resp.success)], ['start', iso(a.start)], ['end', iso(a.end)],
      ['duration', ms(a.duration)], ['waitTime', ms(ann.waitTime)],
      ['initTime', ann.initTime === undefined ? 'warm start' : ms(ann.initTime)], ['kind', ann.kind],
      ['cause', a.cause], ['subject', a.subject]];
    view.replaceChildren(
      el('h2', {}, el('code', {}, a.activationId)),
      el('table', { class: 'kv', id: 'timing' }, ...rows.map(([k, v]) => el('tr', {}, el('th', {}, k), el('td', {}, v)))),
      el('h3', {}, 'Result'), el('pre', { id: 'result' }, JSON.stringify(resp.result, null, 2)),
      el('h3', {}, 'Logs'), el('pre', { id: 'logs' }, (a.logs || []).join('\n') || '(no logs)'),
      el('h3', {}, 'Annotations'),
      el('table', { class: 'kv', id: 'annotations' }, ...(a.annotations || []).map((x) =>
        el('tr', {}, el('th', {}, x.key), el('td', {}, el('code', {}, JSON.stringify(x.value)))))));
  }

  async function replay() {
    for (;;) {
      await fragment('/console/api/replay?view=html');
      await new Promise((ok) => setTimeout(ok, 3000));
    }
  }

  async function main() {
    if (page === 'login') return login();
    if (!key()) {
      location.assign('/console/login?next=' + encodeURIComponent(location.pathname + location.search));
      return;
    }
    const me = await (await call('/console/api/whoami')).json();
    document.getElementById('who').textContent = `${me.namespace}${me.operator ? ' (operator)' : ''}`;
    prefill();
    const q = new URLSearchParams(query);
    q.set('view', 'html');
    if (page === 'live') return live(me.namespace);
    if (page === 'activation') return activation();
    if (page === 'action') return fragment('/console/api/action?' + q);
    if (page === 'audit') {
      if (!query.get('entity')) return undefined;
      return fragment('/console/api/audit?' + q);
    }
    if (page === 'replay') return replay();
    return undefined;
  }

  main().catch((e) => {
    if (!(e instanceof Stop)) view.replaceChildren(el('p', { class: 'failed' }, String(e)));
  });
})();
