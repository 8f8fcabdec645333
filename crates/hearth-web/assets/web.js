// Hearth's screens: sign-in, the clinic's day, a patient's chart and the patient's app.
// Hand-written, no dependencies. Pages are rendered by the server without data; this script signs
// in through the app API's browser mode (refresh token in an HttpOnly cookie, CSRF double submit)
// and fills the page from the same app API every client uses. Texts come from the page's
// #hearth-strings block (Fluent, English or Hindi). Data is only ever put in the page as text
// (textContent), never as HTML.
'use strict';
(function () {
  const STRINGS = JSON.parse(document.getElementById('hearth-strings').textContent || '{}');
  const t = (key) => STRINGS[key] || key;
  const page = document.body.dataset.page;
  const SESSION = 'hearth.session';
  const CSRF_COOKIE = '__Host-hearth-csrf';

  // ---- session ----------------------------------------------------------------------------
  function cookie(name) {
    for (const part of document.cookie.split(';')) {
      const i = part.indexOf('=');
      if (i > 0 && part.slice(0, i).trim() === name) return decodeURIComponent(part.slice(i + 1).trim());
    }
    return null;
  }
  function saveTokens(answer) {
    const expires = Date.now() + Math.max(0, (answer.expires_in || 0) - 30) * 1000;
    sessionStorage.setItem(SESSION, JSON.stringify({ token: answer.access_token, expires }));
  }
  function accessToken() {
    try {
      const s = JSON.parse(sessionStorage.getItem(SESSION) || 'null');
      return s && s.expires > Date.now() ? s.token : null;
    } catch (e) {
      return null;
    }
  }
  // A new access token from the refresh cookie (rotated by the server); false when the session is over.
  async function refresh() {
    const csrf = cookie(CSRF_COOKIE);
    if (!csrf) return false;
    const r = await fetch('/api/v1/auth/refresh', {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf },
      body: JSON.stringify({ cookie: true }),
    });
    if (!r.ok) return false;
    saveTokens(await r.json());
    return true;
  }
  function toSignIn(expired) {
    sessionStorage.removeItem(SESSION);
    const next = location.pathname + location.search;
    location.assign('/signin?next=' + encodeURIComponent(next) + (expired ? '&expired=1' : ''));
  }
  class ApiError extends Error {
    constructor(status, code, message) {
      super(message || code || String(status));
      this.status = status;
      this.code = code;
    }
  }
  // A call of the app API with the access token; renews it once on 401, else back to sign-in.
  async function api(method, path, body) {
    const send = (token) => fetch(path, {
      method,
      credentials: 'same-origin',
      headers: Object.assign({ Authorization: 'Bearer ' + token, Accept: 'application/json' },
        body === undefined ? {} : { 'Content-Type': 'application/json' }),
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let token = accessToken();
    if (!token && (await refresh())) token = accessToken();
    if (!token) {
      toSignIn(true);
      throw new ApiError(401, 'signed_out');
    }
    let r = await send(token);
    if (r.status === 401) {
      if (await refresh()) {
        r = await send(accessToken());
      } else {
        toSignIn(true);
        throw new ApiError(401, 'signed_out');
      }
    }
    if (r.headers.get('X-Hearth-Offline')) {
      const offline = document.getElementById('offline');
      if (offline) offline.hidden = false;
    }
    const text = await r.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch (e) {
      json = null;
    }
    if (!r.ok) {
      const err = (json && json.error) || {};
      throw new ApiError(r.status, err.code, err.message);
    }
    return json;
  }
  async function signOut() {
    const csrf = cookie(CSRF_COOKIE);
    const token = accessToken();
    const headers = { 'Content-Type': 'application/json' };
    if (csrf) headers['X-CSRF-Token'] = csrf;
    if (token) headers.Authorization = 'Bearer ' + token;
    try {
      await fetch('/api/v1/auth/logout', { method: 'POST', credentials: 'same-origin', headers, body: '{}' });
    } catch (e) {
      // Offline: the local session is still ended below.
    }
    sessionStorage.removeItem(SESSION);
    if (navigator.serviceWorker && navigator.serviceWorker.controller) {
      navigator.serviceWorker.controller.postMessage('sign-out');
    }
    if (window.caches) await caches.delete('hearth-data');
    location.assign('/signin' + (page === 'app' ? '?next=%2Fapp' : ''));
  }

  // ---- DOM helpers ------------------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children) {
      if (c === undefined || c === null) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }
  function fill(list, items, empty) {
    list.replaceChildren(...(items.length ? items : [el('li', {}, empty)]));
  }
  function notice(text) {
    const n = document.getElementById('notice');
    n.textContent = text;
    n.hidden = false;
  }
  function failed(list, e) {
    if (e && e.code === 'signed_out') return;
    fill(list, [], e && e.status === 403 ? t('not-available') : t('error-generic'));
  }
  const locale = () => (document.documentElement.lang === 'hi' ? 'hi-IN' : 'en-GB');
  const time = (iso) => new Date(iso).toLocaleTimeString(locale(), { hour: '2-digit', minute: '2-digit' });
  const day = (iso) => new Date(iso).toLocaleDateString(locale(), { weekday: 'short', day: 'numeric', month: 'short', year: 'numeric' });
  const localDate = (d) => d.getFullYear() + '-' + String(d.getMonth() + 1).padStart(2, '0') + '-' + String(d.getDate()).padStart(2, '0');
  const statusText = (s) => t('status-' + s) !== 'status-' + s ? t('status-' + s) : s;
  function humanName(resource) {
    const n = (resource && resource.name && resource.name[0]) || {};
    if (n.text) return n.text;
    return [(n.prefix || []).join(' '), (n.given || []).join(' '), n.family].filter(Boolean).join(' ') || '—';
  }
  function codeText(cc) {
    if (!cc) return '—';
    if (cc.text) return cc.text;
    const c = (cc.coding || [])[0] || {};
    return c.display || c.code || '—';
  }
  async function fhirSearch(path) {
    const bundle = await api('GET', path);
    return ((bundle && bundle.entry) || []).map((e) => e.resource).filter(Boolean);
  }
  async function practitioners() {
    return fhirSearch('/fhir/Practitioner?_count=100&_sort=family');
  }
  async function patientNames(ids) {
    const unique = [...new Set(ids.filter(Boolean))];
    if (!unique.length) return {};
    const found = await fhirSearch('/fhir/Patient?_id=' + unique.map(encodeURIComponent).join(',') + '&_count=' + unique.length);
    return Object.fromEntries(found.map((p) => [p.id, humanName(p)]));
  }

  // ---- sign-in ----------------------------------------------------------------------------
  function signInPage() {
    const form = document.getElementById('signin-form');
    const error = document.getElementById('signin-error');
    const codeStep = document.getElementById('code-step');
    const params = new URLSearchParams(location.search);
    const next = params.get('next');
    // Only a path of this site: never an open redirect.
    const target = next && next.startsWith('/') && !next.startsWith('//') ? next : '/';
    if (params.get('expired')) notice(t('session-expired'));
    const show = (key) => {
      error.textContent = t(key);
      error.hidden = false;
    };
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      error.hidden = true;
      const body = { email: form.email.value.trim(), password: form.password.value, cookie: true };
      if (!codeStep.hidden) body.code = form.code.value.trim();
      const button = document.getElementById('signin-submit');
      button.disabled = true;
      try {
        const r = await fetch('/api/v1/auth/login', {
          method: 'POST',
          credentials: 'same-origin',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify(body),
        });
        const answer = await r.json().catch(() => ({}));
        if (r.ok && answer.mfa_enrollment_required) {
          show('signin-mfa-setup');
        } else if (r.ok) {
          saveTokens(answer);
          location.assign(target);
          return;
        } else {
          const code = (answer.error || {}).code;
          if (code === 'mfa_required') {
            codeStep.hidden = false;
            document.getElementById('password-step').hidden = true;
            button.textContent = t('signin-continue');
            form.code.focus();
          } else if (code === 'totp_invalid') {
            show('signin-code-failed');
            form.code.select();
          } else if (r.status === 429) {
            show('signin-locked');
          } else if (r.status === 401) {
            show('signin-failed');
          } else {
            show('error-generic');
          }
        }
      } catch (e) {
        show('error-generic');
      }
      button.disabled = false;
    });
  }

  // ---- the clinic's day ---------------------------------------------------------------------
  async function clinicPage() {
    const select = document.getElementById('practitioner');
    const list = document.getElementById('appointments');
    const queue = document.getElementById('queue');
    let me;
    try {
      me = await api('GET', '/api/v1/auth/me');
    } catch (e) {
      return failed(list, e);
    }
    const own = me.fhirUser && me.fhirUser.startsWith('Practitioner/') ? me.fhirUser.slice('Practitioner/'.length) : null;
    try {
      const all = await practitioners();
      select.replaceChildren(...all.map((p) => el('option', { value: p.id, selected: p.id === own }, humanName(p))));
      if (!own && all.length) notice(t('no-practitioner'));
    } catch (e) {
      failed(list, e);
    }
    async function schedule() {
      if (!select.value) return fill(list, [], t('no-appointments'));
      try {
        const answer = await api('GET', '/api/v1/appointments?practitioner=' + encodeURIComponent(select.value));
        const today = localDate(new Date());
        const todays = (answer.appointments || []).filter((a) => a.start && localDate(new Date(a.start)) === today);
        const names = await patientNames(todays.map((a) => a.patient));
        fill(list, todays.map((a) => appointmentRow(a, names[a.patient])), t('no-appointments'));
      } catch (e) {
        failed(list, e);
      }
    }
    function appointmentRow(a, name) {
      const status = el('span', { class: 'status' }, statusText(a.status));
      const who = a.patient ? el('a', { href: '/patients/' + encodeURIComponent(a.patient) }, name || a.patient) : '—';
      const row = el('li', { 'data-appointment': a.id }, el('span', {}, el('strong', {}, time(a.start)), ' ', who), status);
      if (a.status === 'booked') {
        const button = el('button', {
          type: 'button',
          class: 'check-in',
          'aria-label': t('check-in') + ': ' + (name || '') + ' ' + time(a.start),
          onclick: async () => {
            button.disabled = true;
            try {
              const done = await api('POST', '/api/v1/appointments/' + encodeURIComponent(a.id) + '/check-in');
              status.textContent = statusText(done.appointment.status);
              button.replaceWith(el('span', { class: 'tag routine' }, t('checked-in')));
            } catch (e) {
              button.disabled = false;
              notice(e.message || t('error-generic'));
            }
          },
        }, t('check-in'));
        row.append(button);
      }
      return row;
    }
    select.addEventListener('change', schedule);
    await schedule();
    try {
      const answer = await api('GET', '/api/v1/intake/queue');
      const sessions = answer.sessions || [];
      // The API orders by urgency; red flags go first whatever their urgency label.
      sessions.sort((x, y) => Number((y.red_flags || []).length > 0) - Number((x.red_flags || []).length > 0));
      const names = await patientNames(sessions.map((s) => s.patient));
      fill(queue, sessions.map((s) => {
        const flags = s.red_flags || [];
        return el('li', { 'data-session': s.id, class: flags.length ? 'flagged' : undefined },
          el('span', {}, el('span', { class: 'tag ' + s.urgency }, t('urgency-' + s.urgency)), ' ',
            el('a', { href: '/patients/' + encodeURIComponent(s.patient) }, names[s.patient] || s.patient), ' ',
            el('a', { href: '/intake/' + encodeURIComponent(s.id), class: 'summary-link',
              'aria-label': t('intake-open') + ': ' + (names[s.patient] || s.patient) }, t('intake-open'))),
          flags.length ? el('span', { class: 'flags' }, t('red-flags') + ': ' + flags.join(', ')) : null);
      }), t('queue-empty'));
    } catch (e) {
      failed(queue, e);
    }
  }

  // ---- a patient's chart ------------------------------------------------------------------
  async function chartPage() {
    const id = document.body.dataset.patient;
    const q = encodeURIComponent(id);
    const demo = document.getElementById('demographics');
    try {
      const p = await api('GET', '/api/v1/patients/' + q + '/demographics');
      document.querySelector('h1').textContent = p.name || t('chart-title');
      const rows = [[t('born'), p.birthDate], [t('gender'), p.gender], [t('phone'), p.phone], [t('email'), p.email]];
      demo.replaceChildren(...rows.filter((r) => r[1]).flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
    } catch (e) {
      if (e.code !== 'signed_out') demo.replaceChildren(el('dt', {}, t('demographics')), el('dd', {}, t('not-available')));
    }
    const sections = [
      ['problems', '/fhir/Condition?patient=' + q + '&_count=50', (r) => codeText(r.code)],
      ['medications', '/fhir/MedicationRequest?patient=' + q + '&_count=50', (r) => codeText(r.medicationCodeableConcept) + (r.status ? ' (' + r.status + ')' : '')],
      ['allergies', '/fhir/AllergyIntolerance?patient=' + q + '&_count=50', (r) => codeText(r.code)],
      ['encounters', '/fhir/Encounter?patient=' + q + '&_sort=-date&_count=20', (r) => {
        const what = (r.type && r.type.length ? codeText(r.type[0]) : '') || (r.class && (r.class.display || r.class.code)) || '—';
        const when = r.period && r.period.start ? day(r.period.start) + ' ' + time(r.period.start) : '';
        return [what, when, statusText(r.status || '')].filter(Boolean).join(' — ');
      }],
    ];
    const charts = [
      ['vitals', '/fhir/Observation?patient=' + q + '&category=vital-signs&_sort=-date&_count=200'],
      ['results', '/fhir/Observation?patient=' + q + '&category=laboratory&_sort=-date&_count=200'],
    ];
    await Promise.all(charts.map(async ([boxId, path]) => {
      const box = document.getElementById(boxId);
      try {
        drawCharts(box, await fhirSearch(path));
      } catch (e) {
        if (e.code !== 'signed_out') box.replaceChildren(el('p', {}, e.status === 403 ? t('not-available') : t('error-generic')));
      }
    }));
    letterDesk(id);
    await Promise.all(sections.map(async ([listId, path, show]) => {
      const list = document.getElementById(listId);
      try {
        const found = await fhirSearch(path);
        fill(list, found.map((r) => el('li', {}, show(r))), t('none-recorded'));
      } catch (e) {
        failed(list, e);
      }
    }));
    const docs = document.getElementById('documents');
    try {
      const answer = await api('GET', '/api/v1/documents?patient=' + q);
      fill(docs, (answer.documents || []).map((d) => el('li', {}, d.title || d.filename || d.id, d.date ? ' — ' + day(d.date) : '')), t('none-recorded'));
    } catch (e) {
      failed(docs, e);
    }
  }


  // ---- charts: one per measure, an SVG line (decoration, hidden from assistive technology)
  // with the same numbers in a table beside it (the accessible form) -------------------------
  const SVG = 'http://www.w3.org/2000/svg';
  function svg(tag, attrs) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
    return e;
  }
  // Observations → measures: {label, unit, points: [{at, values: [..]}]}, oldest first; a blood
  // pressure panel is one measure with two lines (its components).
  function measures(observations) {
    const groups = new Map();
    for (const o of observations) {
      const at = o.effectiveDateTime || (o.effectivePeriod && o.effectivePeriod.start) || o.issued;
      if (!at) continue;
      let values;
      let unit;
      if (o.valueQuantity && typeof o.valueQuantity.value === 'number') {
        values = [o.valueQuantity.value];
        unit = o.valueQuantity.unit || o.valueQuantity.code || '';
      } else if ((o.component || []).length) {
        const parts = o.component.filter((c) => c.valueQuantity && typeof c.valueQuantity.value === 'number');
        if (!parts.length) continue;
        values = parts.map((c) => c.valueQuantity.value);
        unit = parts[0].valueQuantity.unit || '';
      } else {
        continue;
      }
      const c = ((o.code && o.code.coding) || [])[0] || {};
      const key = (c.system || '') + '|' + (c.code || codeText(o.code)) + '|' + values.length;
      if (!groups.has(key)) groups.set(key, { label: codeText(o.code), unit, points: [] });
      groups.get(key).points.push({ at, values });
    }
    const out = [...groups.values()];
    for (const m of out) m.points.sort((a, b) => new Date(a.at) - new Date(b.at));
    return out;
  }
  function lineChart(m) {
    const W = 320;
    const H = 120;
    const pad = 8;
    const all = m.points.flatMap((p) => p.values);
    let lo = Math.min(...all);
    let hi = Math.max(...all);
    if (hi === lo) { hi += 1; lo -= 1; }
    const times = m.points.map((p) => new Date(p.at).getTime());
    const t0 = Math.min(...times);
    const span = Math.max(1, Math.max(...times) - t0);
    const x = (ms) => pad + ((ms - t0) / span) * (W - 2 * pad);
    const y = (v) => H - pad - ((v - lo) / (hi - lo)) * (H - 2 * pad);
    const chart = svg('svg', { viewBox: '0 0 ' + W + ' ' + H, class: 'chart', 'aria-hidden': 'true', focusable: 'false' });
    chart.append(svg('rect', { x: 0, y: 0, width: W, height: H, class: 'chart-bg' }));
    const lines = m.points[0].values.length;
    for (let i = 0; i < lines; i++) {
      const pts = m.points.map((p, j) => x(times[j]).toFixed(1) + ',' + y(p.values[i]).toFixed(1));
      chart.append(svg('polyline', { points: pts.join(' '), class: 'chart-line line-' + i }));
      m.points.forEach((p, j) => chart.append(svg('circle', { cx: x(times[j]).toFixed(1), cy: y(p.values[i]).toFixed(1), r: 3, class: 'chart-dot line-' + i })));
    }
    return chart;
  }
  function drawCharts(box, observations) {
    const found = measures(observations);
    if (!found.length) return box.replaceChildren(el('p', {}, t('none-recorded')));
    box.replaceChildren(...found.map((m) => {
      const latest = m.points[m.points.length - 1];
      const rows = m.points.slice().reverse().map((p) => el('tr', {}, el('td', {}, day(p.at) + ' ' + time(p.at)), el('td', {}, p.values.join('/') + ' ' + m.unit)));
      const table = el('table', {}, el('caption', {}, m.label),
        el('thead', {}, el('tr', {}, el('th', { scope: 'col' }, t('chart-when')), el('th', { scope: 'col' }, t('chart-value')))),
        el('tbody', {}, ...rows));
      return el('figure', { class: 'measure', 'data-measure': m.label },
        el('figcaption', {}, el('strong', {}, m.label), ' ', latest.values.join('/') + ' ' + m.unit, ' — ' + day(latest.at)),
        lineChart(m),
        el('details', {}, el('summary', {}, t('chart-table')), table));
    }));
  }

  // ---- letters on the chart: draft → final → amend ------------------------------------------
  function letterDesk(patient) {
    const base = '/api/patients/' + encodeURIComponent(patient) + '/letters';
    const list = document.getElementById('letters');
    const form = document.getElementById('letter-form');
    const heading = document.getElementById('letter-form-h');
    const error = document.getElementById('letter-error');
    const kind = document.getElementById('letter-kind');
    const title = document.getElementById('letter-title');
    const text = document.getElementById('letter-text');
    const save = document.getElementById('letter-save');
    const final = document.getElementById('letter-final');
    const cancel = document.getElementById('letter-cancel');
    let editing = null; // the letter being changed, or null for a new one
    function reset() {
      editing = null;
      form.reset();
      kind.disabled = false;
      save.hidden = false;
      cancel.hidden = true;
      heading.textContent = t('letter-write');
      final.textContent = t('letter-finalise');
    }
    function edit(l) {
      editing = l;
      kind.value = l.kind || 'consult';
      kind.disabled = true;
      title.value = l.title || '';
      text.value = l.text || '';
      const draft = l.status === 'draft';
      save.hidden = !draft;
      cancel.hidden = false;
      heading.textContent = draft ? t('letter-edit-draft') : t('letter-amend-title');
      final.textContent = draft ? t('letter-finalise') : t('letter-amend');
      title.focus();
    }
    async function load() {
      try {
        const answer = await api('GET', base);
        fill(list, (answer.letters || []).map((l) => el('li', { 'data-letter': l.id, 'data-status': l.status },
          el('span', {}, el('strong', {}, l.title || '—'), ' ', el('span', { class: 'tag routine' }, t('letter-status-' + l.status)),
            l.date ? ' — ' + day(l.date) : ''),
          el('span', { class: 'actions' },
            el('button', { type: 'button', class: 'secondary edit', 'aria-label': (l.status === 'draft' ? t('letter-edit') : t('letter-amend')) + ': ' + (l.title || ''),
              onclick: () => edit(l) }, l.status === 'draft' ? t('letter-edit') : t('letter-amend')),
            l.status === 'amended' ? el('button', { type: 'button', class: 'secondary versions', 'aria-label': t('letter-versions') + ': ' + (l.title || ''),
              onclick: (e) => versions(l, e.target) }, t('letter-versions')) : null))), t('no-letters'));
      } catch (e) {
        failed(list, e);
      }
    }
    // Every version the API kept (to a clinician: the draft too), newest first as it answers.
    async function versions(l, button) {
      button.disabled = true;
      try {
        const answer = await api('GET', base + '/' + encodeURIComponent(l.id) + '/versions');
        const shown = el('ol', { class: 'versions-list' }, ...(answer.versions || []).map((v) => el('li', {},
          el('strong', {}, t('letter-status-' + v.status)), v.date ? ' — ' + day(v.date) + ' ' + time(v.date) : '',
          el('p', { class: 'letter' }, v.text || ''))));
        button.closest('li').after(el('li', { class: 'versions-row' }, shown));
        button.remove();
      } catch (e) {
        button.disabled = false;
        notice(e.message || t('error-generic'));
      }
    }
    async function send(status) {
      error.hidden = true;
      if (!title.value.trim() || !text.value.trim()) {
        error.textContent = t('letter-needs-text');
        error.hidden = false;
        return;
      }
      save.disabled = final.disabled = true;
      try {
        if (!editing) {
          await api('POST', base, { kind: kind.value, title: title.value.trim(), text: text.value, status });
        } else {
          const to = editing.status === 'draft' ? status : 'amended';
          await api('PUT', base + '/' + encodeURIComponent(editing.id), { title: title.value.trim(), text: text.value, status: to });
          status = to;
        }
        reset();
        notice(t(status === 'draft' ? 'letter-saved' : status === 'final' ? 'letter-finalised' : 'letter-amended'));
        await load();
      } catch (e) {
        if (e.code !== 'signed_out') {
          error.textContent = e.status === 403 ? t('not-available') : e.message || t('error-generic');
          error.hidden = false;
        }
      }
      save.disabled = final.disabled = false;
    }
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      send('draft');
    });
    final.addEventListener('click', () => send('final'));
    cancel.addEventListener('click', reset);
    load();
  }

  // ---- an intake interview's summary ----------------------------------------------------------
  async function intakePage() {
    const id = document.body.dataset.session;
    const flags = document.getElementById('summary-flags');
    let s;
    try {
      s = await api('GET', '/api/v1/intake/sessions/' + encodeURIComponent(id) + '/summary');
    } catch (e) {
      return failed(flags, e);
    }
    // The summary names its patient as a reference (`Patient/<id>`).
    const patient = String(s.patient || '').replace(/^Patient\//, '');
    const chart = document.getElementById('intake-chart');
    chart.href = '/patients/' + encodeURIComponent(patient);
    chart.hidden = false;
    try {
      const names = await patientNames([patient]);
      if (names[patient]) document.querySelector('h1').textContent = t('intake-title') + ': ' + names[patient];
    } catch (e) {
      // The summary stands without the name.
    }
    fill(flags, (s.red_flags || []).map((f) => el('li', { class: 'flagged' },
      el('span', {}, el('span', { class: 'tag ' + f.urgency }, t('urgency-' + f.urgency)), ' ', el('strong', { class: 'flags' }, f.title),
        f.model_suggested ? el('span', { class: 'hint' }, ' ' + t('intake-model')) : null),
      el('span', {}, t('intake-evidence') + ': ' + ((f.evidence || []).join('; ') || '—')),
      el('span', {}, t('intake-source') + ': ', el('a', { href: f.source.url, rel: 'noopener noreferrer' }, f.source.title)))), t('intake-no-flags'));
    const facts = [
      [t('intake-urgency'), t('urgency-' + s.urgency)],
      [t('intake-complaint'), s.presenting_complaint],
      [t('intake-language'), s.language],
      [t('intake-medications'), (s.medications || []).join(', ')],
      [t('intake-allergies'), (s.allergies || []).join(', ')],
    ];
    document.getElementById('summary-facts').replaceChildren(...facts.filter((r) => r[1]).flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
    const finding = (f) => el('li', {}, el('span', {}, el('strong', {}, f.display), f.body_site ? ' (' + f.body_site + ')' : ''), f.evidence ? el('span', {}, '“' + f.evidence + '”') : null);
    fill(document.getElementById('summary-positives'), (s.pertinent_positives || []).map(finding), t('none-recorded'));
    fill(document.getElementById('summary-negatives'), (s.pertinent_negatives || []).map(finding), t('none-recorded'));
    document.getElementById('summary-history').replaceChildren(...(s.history || []).flatMap((h) => [el('dt', {}, h.question), el('dd', {}, h.answer)]));
    fill(document.getElementById('summary-words'), (s.patient_words || []).map((w) => el('li', {},
      el('span', { lang: w.language === 'hi' ? 'hi' : w.language === 'en' ? 'en' : undefined }, '“' + w.text + '”'), w.gloss ? el('span', { class: 'hint' }, w.gloss) : null)), t('none-recorded'));
    const reviewed = document.getElementById('summary-reviewed');
    const button = document.getElementById('summary-review');
    const showReviewed = (at) => { reviewed.textContent = t('intake-reviewed') + (at ? ' — ' + day(at) + ' ' + time(at) : ''); };
    if (s.reviewed_at) return showReviewed(s.reviewed_at);
    button.hidden = false;
    button.addEventListener('click', async () => {
      button.disabled = true;
      try {
        await api('POST', '/api/v1/intake/sessions/' + encodeURIComponent(id) + '/review');
        button.hidden = true;
        showReviewed(new Date().toISOString());
      } catch (e) {
        button.disabled = false;
        notice(e.message || t('error-generic'));
      }
    });
  }

  // ---- the alerts inbox -------------------------------------------------------------------
  async function alertsPage() {
    const list = document.getElementById('alerts');
    const which = document.getElementById('alert-status');
    async function load() {
      try {
        const answer = await api('GET', '/api/v1/health/alerts?status=' + encodeURIComponent(which.value));
        const alerts = answer.alerts || [];
        const names = await patientNames(alerts.map((a) => a.patient));
        fill(list, alerts.map((a) => {
          const status = el('span', { class: 'status' }, t('alert-status-' + a.status));
          const urgent = a.level === 'high' || a.level === 'sepsis_alert';
          const row = el('li', { 'data-alert': a.id, class: urgent ? 'flagged' : undefined },
            el('span', {}, el('span', { class: 'tag ' + (urgent ? 'emergency' : 'urgent') }, a.summary || a.rule), ' ',
              el('a', { href: '/patients/' + encodeURIComponent(a.patient) }, names[a.patient] || a.patient)),
            el('span', { class: 'hint' }, t('alert-raised') + ' ' + day(a.raised_at) + ' ' + time(a.raised_at)),
            status);
          if (a.status === 'open' || a.status === 'escalated') {
            const button = el('button', { type: 'button', class: 'acknowledge',
              'aria-label': t('alert-acknowledge') + ': ' + (a.summary || a.rule) + ', ' + (names[a.patient] || ''),
              onclick: async () => {
                button.disabled = true;
                try {
                  const done = await api('POST', '/api/v1/health/alerts/' + encodeURIComponent(a.id) + '/acknowledge');
                  status.textContent = t('alert-status-' + done.status);
                  button.remove();
                } catch (e) {
                  button.disabled = false;
                  notice(e.status === 403 ? t('not-available') : e.message || t('error-generic'));
                }
              } }, t('alert-acknowledge'));
            row.append(button);
          }
          return row;
        }), t('alerts-empty'));
      } catch (e) {
        failed(list, e);
      }
    }
    which.addEventListener('change', load);
    await load();
  }

  // ---- the administrator's console --------------------------------------------------------
  async function adminPage() {
    const accounts = document.getElementById('accounts');
    let self = null;
    async function loadAccounts() {
      try {
        if (!self) self = (await api('GET', '/api/v1/auth/me')).id;
        const answer = await api('GET', '/api/v1/admin/accounts');
        fill(accounts, (answer.accounts || []).map((a) => {
          const twoFactor = el('span', { class: 'status' }, a.totpEnabled ? t('admin-2fa-on') : t('admin-2fa-off'));
          const row = el('li', { 'data-account': a.id },
            el('span', {}, el('strong', {}, a.email || a.phone || a.id), ' ', el('span', { class: 'tag routine' }, t('role-' + a.role))),
            twoFactor);
          // Not one's own: an administrator who lost the device asks another administrator.
          if (a.totpEnabled && a.id !== self) {
            const button = el('button', { type: 'button', class: 'secondary reset-2fa',
              'aria-label': t('admin-reset-2fa') + ': ' + (a.email || a.id),
              onclick: async () => {
                button.disabled = true;
                try {
                  await api('POST', '/api/v1/admin/accounts/' + encodeURIComponent(a.id) + '/totp/reset');
                  twoFactor.textContent = t('admin-2fa-off');
                  button.remove();
                  notice(t('admin-reset-done'));
                } catch (e) {
                  button.disabled = false;
                  notice(e.message || t('error-generic'));
                }
              } }, t('admin-reset-2fa'));
            row.append(button);
          }
          return row;
        }), t('none-recorded'));
      } catch (e) {
        failed(accounts, e);
      }
    }
    const deliveries = document.getElementById('deliveries');
    const status = document.getElementById('delivery-status');
    async function loadDeliveries() {
      try {
        const answer = await api('GET', '/api/v1/admin/notifications?limit=50' + (status.value ? '&status=' + encodeURIComponent(status.value) : ''));
        fill(deliveries, (answer.notifications || []).map((n) => el('li', { 'data-delivery': n.id },
          el('span', {}, el('strong', {}, n.channel || '—'), ' ', el('span', { class: 'tag ' + (n.status === 'failed' || n.status === 'bounced' ? 'urgent' : 'routine') }, t('delivery-' + n.status))),
          el('span', {}, (n.attempts || 0) + ' ' + t('admin-attempts') + (n.updated_at ? ' — ' + day(n.updated_at) + ' ' + time(n.updated_at) : '')),
          n.last_error ? el('span', { class: 'hint' }, n.last_error) : null)), t('deliveries-empty'));
      } catch (e) {
        failed(deliveries, e);
      }
    }
    status.addEventListener('change', loadDeliveries);
    const audit = document.getElementById('audit');
    document.getElementById('audit-form').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const patient = document.getElementById('audit-patient').value.trim();
      const on = document.getElementById('audit-day').value;
      let path = '/fhir/AuditEvent?_sort=-date&_count=50';
      if (patient) path += '&patient=' + encodeURIComponent('Patient/' + patient.replace(/^Patient\//, ''));
      if (on) {
        const from = new Date(on + 'T00:00:00');
        path += '&date=ge' + encodeURIComponent(from.toISOString()) + '&date=lt' + encodeURIComponent(new Date(from.getTime() + 864e5).toISOString());
      }
      try {
        const events = await fhirSearch(path);
        fill(audit, events.map((e) => {
          const who = ((e.agent || [])[0] || {}).who || {};
          const what = ((e.subtype || [])[0] || {}).display || (e.type || {}).display || (e.type || {}).code || '—';
          const entity = ((e.entity || [])[0] || {}).what || {};
          return el('li', { 'data-event': e.id },
            el('span', {}, el('strong', {}, e.recorded ? day(e.recorded) + ' ' + time(e.recorded) : '—'), ' ', what, e.action ? ' (' + e.action + ')' : ''),
            el('span', {}, who.display || who.reference || (who.identifier || {}).value || '—', entity.reference ? ' → ' + entity.reference : ''),
            el('span', { class: 'status' }, e.outcome === '0' ? '✓' : e.outcomeDesc || e.outcome || ''));
        }), t('audit-empty'));
      } catch (e) {
        failed(audit, e);
      }
    });
    await Promise.all([loadAccounts(), loadDeliveries()]);
  }

  // ---- the patient's app ------------------------------------------------------------------
  async function appPage() {
    if (navigator.serviceWorker) {
      navigator.serviceWorker.register('/app/sw.js', { scope: '/app' }).catch(() => {});
    }
    const mine = document.getElementById('my-appointments');
    const letters = document.getElementById('letters');
    let me;
    try {
      me = await api('GET', '/api/v1/auth/me');
    } catch (e) {
      failed(mine, e);
      return failed(letters, e);
    }
    const patient = me.fhirUser && me.fhirUser.startsWith('Patient/') ? me.fhirUser.slice('Patient/'.length) : null;
    let doctors = {};
    async function appointments() {
      try {
        const answer = await api('GET', '/api/v1/appointments');
        // From today on (by date: which slots are past is the server's to say).
        const today = localDate(new Date());
        const upcoming = (answer.appointments || []).filter((a) => a.end && localDate(new Date(a.end)) >= today);
        fill(mine, upcoming.map((a) => {
          const when = day(a.start) + ' ' + time(a.start);
          const row = el('li', { 'data-appointment': a.id },
            el('span', {}, el('strong', {}, when), ' ', doctors[a.practitioner] || ''),
            el('span', { class: 'status' }, statusText(a.status)));
          if (a.status === 'booked') {
            row.append(el('span', { class: 'actions' },
              el('button', { type: 'button', class: 'secondary reschedule', 'aria-label': t('reschedule') + ': ' + when,
                onclick: () => startReschedule(a, when) }, t('reschedule')),
              el('button', { type: 'button', class: 'secondary cancel', 'aria-label': t('cancel-appointment') + ': ' + when,
                onclick: async (e) => {
                  e.target.disabled = true;
                  try {
                    await api('POST', '/api/v1/appointments/' + encodeURIComponent(a.id) + '/cancel', {});
                    notice(t('cancelled-ok'));
                    await appointments();
                  } catch (err) {
                    e.target.disabled = false;
                    notice(err.message || t('error-generic'));
                  }
                } }, t('cancel-appointment'))));
          }
          return row;
        }), t('no-appointments'));
      } catch (e) {
        failed(mine, e);
      }
    }
    const select = document.getElementById('book-practitioner');
    try {
      const all = await practitioners();
      doctors = Object.fromEntries(all.map((p) => [p.id, humanName(p)]));
      select.replaceChildren(...all.map((p) => el('option', { value: p.id }, humanName(p))));
    } catch (e) {
      // The booking form stays empty; appointments and letters still load.
    }
    await appointments();
    const dayInput = document.getElementById('book-day');
    dayInput.value = localDate(new Date());
    const slots = document.getElementById('slots');
    // Rescheduling: the booking form finds the new time; a chosen slot moves the visit.
    const rescheduling = document.getElementById('rescheduling');
    let moving = null;
    function startReschedule(a, when) {
      moving = a;
      if (a.practitioner) select.value = a.practitioner;
      rescheduling.textContent = t('rescheduling') + ' (' + when + ')';
      rescheduling.hidden = false;
      slots.replaceChildren();
      dayInput.focus();
    }
    document.getElementById('book-form').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      if (!select.value || !dayInput.value) return;
      const from = new Date(dayInput.value + 'T00:00:00');
      const to = new Date(from.getTime() + 24 * 3600 * 1000);
      // The whole day: the server leaves out what is past or too soon by its own clock.
      const start = from;
      try {
        const answer = await api('GET', '/api/v1/appointments/slots/available?practitioner=' + encodeURIComponent(select.value) +
          '&from=' + encodeURIComponent(start.toISOString()) + '&to=' + encodeURIComponent(to.toISOString()) +
          '&type=' + encodeURIComponent((moving && moving.type) || 'ROUTINE'));
        fill(slots, (answer.slots || []).map((s) => el('li', {}, el('button', {
          type: 'button',
          class: 'secondary slot',
          'data-start': s.start,
          onclick: async (e) => {
            e.target.disabled = true;
            try {
              if (moving) {
                await api('POST', '/api/v1/appointments/' + encodeURIComponent(moving.id) + '/reschedule', { start: s.start });
                moving = null;
                rescheduling.hidden = true;
                slots.replaceChildren(el('li', {}, t('rescheduled-ok')));
              } else {
                await api('POST', '/api/v1/appointments', { practitioner: select.value, start: s.start, type: 'ROUTINE' });
                slots.replaceChildren(el('li', {}, t('booked-ok')));
              }
              await appointments();
            } catch (err) {
              e.target.disabled = false;
              notice(err.message || t('error-generic'));
            }
          },
        }, time(s.start)))), t('no-slots'));
      } catch (e) {
        failed(slots, e);
      }
    });
    readingForm();
    if (!patient) return fill(letters, [], t('not-available'));
    try {
      const answer = await api('GET', '/api/patients/' + encodeURIComponent(patient) + '/letters');
      const shown = (answer.letters || []).filter((l) => l.status !== 'draft');
      const view = document.getElementById('letter');
      fill(letters, shown.map((l) => el('li', {},
        el('span', {}, el('strong', {}, l.title || '—'), l.date ? ' — ' + day(l.date) : ''),
        el('button', { type: 'button', class: 'secondary', onclick: () => {
          view.replaceChildren(el('h3', {}, l.title || ''), el('p', {}, l.text || ''));
          view.hidden = false;
          view.focus();
        } }, t('read-letter')))), t('no-letters'));
    } catch (e) {
      failed(letters, e);
    }
  }

  // A reading the patient logs (their own record: the API's default patient).
  function readingForm() {
    const form = document.getElementById('reading-form');
    const kind = document.getElementById('reading-kind');
    const value = document.getElementById('reading-value');
    const label = document.getElementById('reading-value-label');
    const second = document.getElementById('reading-second');
    const diastolic = document.getElementById('reading-diastolic');
    const error = document.getElementById('reading-error');
    const done = document.getElementById('reading-done');
    const shape = () => {
      const bp = kind.value === 'blood_pressure';
      label.textContent = bp ? t('reading-systolic') : t('reading-value');
      second.hidden = !bp;
    };
    kind.addEventListener('change', shape);
    shape();
    const number = (input) => {
      const n = Number(input.value.trim().replace(',', '.'));
      return input.value.trim() && Number.isFinite(n) ? n : null;
    };
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      error.hidden = true;
      done.textContent = '';
      const reading = { kind: kind.value, effective: new Date().toISOString() };
      if (kind.value === 'blood_pressure') {
        reading.systolic = number(value);
        reading.diastolic = number(diastolic);
      } else {
        reading.value = number(value);
      }
      if (reading.systolic === null || reading.diastolic === null || reading.value === null) {
        error.textContent = t('reading-invalid');
        error.hidden = false;
        return;
      }
      const button = document.getElementById('reading-save');
      button.disabled = true;
      try {
        await api('POST', '/api/v1/health/vitals', { readings: [reading] });
        form.reset();
        shape();
        done.textContent = t('reading-saved');
      } catch (e) {
        if (e.code !== 'signed_out') {
          error.textContent = e.message || t('error-generic');
          error.hidden = false;
        }
      }
      button.disabled = false;
    });
  }

  const signOutButton = document.getElementById('sign-out');
  if (signOutButton) signOutButton.addEventListener('click', signOut);
  const run = { signin: signInPage, clinic: clinicPage, chart: chartPage, intake: intakePage, alerts: alertsPage, admin: adminPage, app: appPage }[page];
  if (run) run();
})();
