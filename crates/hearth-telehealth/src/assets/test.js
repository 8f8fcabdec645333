// The video visit test page: joins a Hearth telehealth room with camera and microphone.
// Signaling is the room's WebSocket (see the OpenAPI description of /api/v1/telehealth/ws/{room});
// peers follow the "perfect negotiation" pattern, one RTCPeerConnection per other participant.
// State is kept on window.hearthCall so the browser tests (and a curious user) can read it.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const call = {
    state: 'idle', // idle, waiting, admitted, declined, full, left, error
    me: null,
    role: null,
    room: null,
    token: null,
    relay: false,
    iceServers: [],
    peers: new Map(),
    waiting: [],
    late: null,
    closeCode: null,
    chat: [],
    errors: [],
    ws: null,
    stream: null,
    reconnects: 0,
  };
  window.hearthCall = call;

  const setStatus = (text) => { $('status').textContent = text; };
  const setNotice = (text) => { $('notice').textContent = text; };

  function report(e) {
    call.errors.push(String(e && e.message ? e.message : e));
  }

  function send(msg) {
    if (call.ws && call.ws.readyState === WebSocket.OPEN) {
      call.ws.send(JSON.stringify(msg));
    }
  }

  function signal(to, data) {
    send({ type: 'signal', to, data });
  }

  function videoFor(id) {
    let fig = document.querySelector(`figure[data-peer="${id}"]`);
    if (!fig) {
      fig = document.createElement('figure');
      fig.dataset.peer = id;
      const v = document.createElement('video');
      v.autoplay = true;
      v.playsInline = true;
      v.setAttribute('aria-label', `Participant ${id}`);
      const cap = document.createElement('figcaption');
      cap.textContent = id;
      fig.append(v, cap);
      $('videos').append(fig);
    }
    return fig.querySelector('video');
  }

  function dropPeer(id) {
    const p = call.peers.get(id);
    if (p) {
      p.pc.close();
      call.peers.delete(id);
    }
    const fig = document.querySelector(`figure[data-peer="${id}"]`);
    if (fig) fig.remove();
  }

  // One connection per other participant. The polite side gives way when both offer at once.
  function peer(id) {
    let p = call.peers.get(id);
    if (p) return p;
    const pc = new RTCPeerConnection({
      iceServers: call.iceServers,
      iceTransportPolicy: call.relay ? 'relay' : 'all',
    });
    p = { id, pc, polite: call.me < id, makingOffer: false, ignoreOffer: false, chain: Promise.resolve() };
    call.peers.set(id, p);
    for (const track of call.stream.getTracks()) pc.addTrack(track, call.stream);
    pc.onnegotiationneeded = async () => {
      try {
        p.makingOffer = true;
        await pc.setLocalDescription();
        signal(id, { description: pc.localDescription });
      } catch (e) {
        report(e);
      } finally {
        p.makingOffer = false;
      }
    };
    pc.onicecandidate = ({ candidate }) => {
      if (candidate) signal(id, { candidate });
    };
    pc.ontrack = ({ streams }) => {
      const v = videoFor(id);
      if (streams[0] && v.srcObject !== streams[0]) v.srcObject = streams[0];
    };
    pc.oniceconnectionstatechange = () => {
      if (pc.iceConnectionState === 'failed') pc.restartIce();
    };
    pc.onconnectionstatechange = () => render();
    return p;
  }

  async function onSignal(from, data) {
    const p = peer(from);
    const pc = p.pc;
    if (data.description) {
      const collision = data.description.type === 'offer' && (p.makingOffer || pc.signalingState !== 'stable');
      p.ignoreOffer = !p.polite && collision;
      if (p.ignoreOffer) return;
      await pc.setRemoteDescription(data.description);
      if (data.description.type === 'offer') {
        await pc.setLocalDescription();
        signal(from, { description: pc.localDescription });
      }
    } else if (data.candidate) {
      try {
        await pc.addIceCandidate(data.candidate);
      } catch (e) {
        if (!p.ignoreOffer) throw e;
      }
    }
  }

  function render() {
    const connected = [...call.peers.values()].filter((p) => p.pc.connectionState === 'connected').length;
    const text = {
      idle: 'Not connected',
      waiting: 'Waiting for the clinician to admit you',
      admitted: `In the call (${connected} of ${call.peers.size} connected)`,
      declined: 'The clinician declined this visit',
      full: 'The room is full',
      left: 'You left the call',
      error: 'Could not join the room',
    }[call.state] || call.state;
    setStatus(text);
    $('lobby').hidden = !(call.role === 'clinician' && call.state === 'admitted');
    const list = $('waiting');
    list.replaceChildren();
    for (const w of call.waiting) {
      const li = document.createElement('li');
      li.textContent = `${w.role} ${w.participant} `;
      const admit = document.createElement('button');
      admit.type = 'button';
      admit.textContent = 'Admit';
      admit.dataset.admit = w.participant;
      admit.addEventListener('click', () => send({ type: 'admit', participant: w.participant }));
      const decline = document.createElement('button');
      decline.type = 'button';
      decline.textContent = 'Decline';
      decline.dataset.decline = w.participant;
      decline.addEventListener('click', () => send({ type: 'decline', participant: w.participant }));
      li.append(admit, decline);
      list.append(li);
    }
  }

  function enterCall(participants) {
    call.state = 'admitted';
    // The one who arrives offers to everyone already there.
    for (const p of participants) {
      if (p.connected !== false) peer(p.participant);
    }
    render();
  }

  function onMessage(m) {
    switch (m.type) {
      case 'welcome':
        call.me = m.you;
        call.role = m.role;
        if (m.waiting) call.waiting = m.waiting;
        // A resumed socket starts its connections again (an ICE restart with fresh ones).
        for (const id of [...call.peers.keys()]) dropPeer(id);
        if (m.status === 'admitted') {
          enterCall(m.participants || []);
        } else {
          call.state = 'waiting';
          if (m.late) setNotice(`The clinician is running ${m.late} minutes late`);
          render();
        }
        break;
      case 'admitted':
        enterCall(m.participants || []);
        break;
      case 'declined':
        call.state = 'declined';
        render();
        break;
      case 'lobby':
        call.waiting = m.waiting || [];
        render();
        break;
      case 'late':
        call.late = m.minutes;
        setNotice(`The clinician is running ${m.minutes} minutes late`);
        break;
      case 'presence':
        if (m.event === 'left' || m.event === 'reconnected') {
          dropPeer(typeof m.participant === 'string' ? m.participant : m.participant.participant);
        }
        render();
        break;
      case 'signal': {
        const p = peer(m.from);
        p.chain = p.chain.then(() => onSignal(m.from, m.data)).catch(report);
        break;
      }
      case 'chat': {
        call.chat.push({ from: m.from, text: m.text });
        const li = document.createElement('li');
        li.textContent = `${m.from === call.me ? 'You' : m.from}: ${m.text}`;
        $('chat').append(li);
        break;
      }
      case 'error':
        report(`${m.code}: ${m.message}`);
        break;
      default:
        break;
    }
  }

  // The access token of the web screens' session (signed in at /signin): the one kept for this
  // tab, else a new one from the refresh cookie (CSRF double submit, as the screens do).
  const SESSION = 'hearth.session';
  function cookie(name) {
    for (const part of document.cookie.split(';')) {
      const i = part.indexOf('=');
      if (i > 0 && part.slice(0, i).trim() === name) return decodeURIComponent(part.slice(i + 1).trim());
    }
    return null;
  }
  async function sessionToken(renew) {
    try {
      const s = JSON.parse(sessionStorage.getItem(SESSION) || 'null');
      if (!renew && s && s.expires > Date.now()) return s.token;
    } catch (e) {
      report(e);
    }
    const csrf = cookie('__Host-hearth-csrf');
    if (!csrf) return null;
    const r = await fetch('/api/v1/auth/refresh', {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf },
      body: JSON.stringify({ cookie: true }),
    });
    if (!r.ok) return null;
    const a = await r.json();
    const expires = Date.now() + Math.max(0, (a.expires_in || 0) - 30) * 1000;
    sessionStorage.setItem(SESSION, JSON.stringify({ token: a.access_token, expires }));
    return a.access_token;
  }

  async function connect() {
    const ask = () => fetch(`/api/v1/telehealth/rooms/${encodeURIComponent(call.room)}`, {
      headers: { Authorization: `Bearer ${call.token}` },
    });
    let r = await ask();
    if (r.status === 401 && call.fromSession) {
      call.token = await sessionToken(true);
      if (call.token) r = await ask();
    }
    const body = await r.json();
    if (!r.ok) throw new Error(body.error ? `${body.error.code}: ${body.error.message}` : `HTTP ${r.status}`);
    if (!body.ticket) throw new Error(`the room is ${body.state}`);
    call.iceServers = body.iceServers;
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(`${scheme}//${location.host}${body.socket}?ticket=${encodeURIComponent(body.ticket)}`);
    call.ws = ws;
    ws.onmessage = (ev) => {
      try {
        onMessage(JSON.parse(ev.data));
      } catch (e) {
        report(e);
      }
    };
    ws.onclose = (ev) => {
      if (call.ws !== ws) return;
      call.closeCode = ev.code;
      if (ev.code === 4403) call.state = 'declined';
      else if (ev.code === 4409) call.state = 'full';
      else if (ev.code === 4000 || ev.code === 1000) call.state = call.state === 'left' ? 'left' : call.state;
      else if ((call.state === 'admitted' || call.state === 'waiting') && call.reconnects < 5) {
        // Dropped: come back within the server's grace with a new ticket.
        call.reconnects += 1;
        setTimeout(() => connect().catch((e) => { report(e); call.state = 'error'; render(); }), 1000);
      }
      render();
    };
  }

  async function join(ev) {
    if (ev) ev.preventDefault();
    call.room = $('room').value.trim();
    call.token = call.token || $('token').value.trim();
    call.relay = $('relay').checked;
    try {
      if (!call.token) {
        call.token = await sessionToken(false);
        call.fromSession = true;
      }
      if (!call.token) throw new Error('sign in first (or paste an access token)');
      if (!call.stream) {
        call.stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
        $('local').srcObject = call.stream;
      }
      await connect();
    } catch (e) {
      report(e);
      call.state = 'error';
      render();
    }
  }

  function toggle(button, field, on, off) {
    const pressed = button.getAttribute('aria-pressed') !== 'true';
    button.setAttribute('aria-pressed', String(pressed));
    button.textContent = pressed ? on : off;
    return pressed;
  }

  // Counters the tests (and a user in the console) read.
  call.framesReceived = async () => {
    let frames = 0;
    for (const p of call.peers.values()) {
      const stats = await p.pc.getStats();
      stats.forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'video') frames += s.framesDecoded || 0;
      });
    }
    return frames;
  };
  call.candidateTypes = async () => {
    const types = [];
    for (const p of call.peers.values()) {
      const stats = await p.pc.getStats();
      stats.forEach((s) => {
        if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') {
          const local = stats.get(s.localCandidateId);
          const remote = stats.get(s.remoteCandidateId);
          types.push(`${local && local.candidateType}/${remote && remote.candidateType}`);
        }
      });
    }
    return types;
  };
  call.connectionStates = () => [...call.peers.values()].map((p) => p.pc.connectionState);
  call.dropSocket = () => { if (call.ws) call.ws.close(4001, 'test drop'); };

  document.addEventListener('DOMContentLoaded', () => {
    $('join-form').addEventListener('submit', join);
    $('late-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      send({ type: 'late', minutes: Number($('late-minutes').value) });
    });
    $('chat-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const text = $('chat-text').value.trim();
      if (text) send({ type: 'chat', text });
      $('chat-text').value = '';
    });
    $('mute').addEventListener('click', () => {
      const muted = toggle($('mute'), 'muted', 'Unmute', 'Mute');
      if (call.stream) call.stream.getAudioTracks().forEach((t) => { t.enabled = !muted; });
      send({ type: 'state', muted });
    });
    $('camera').addEventListener('click', () => {
      const off = toggle($('camera'), 'camera', 'Camera on', 'Camera off');
      if (call.stream) call.stream.getVideoTracks().forEach((t) => { t.enabled = !off; });
      send({ type: 'state', camera: !off });
    });
    $('hand').addEventListener('click', () => {
      const up = toggle($('hand'), 'hand', 'Lower hand', 'Raise hand');
      send({ type: 'state', hand: up });
    });
    $('leave').addEventListener('click', () => {
      call.state = 'left';
      send({ type: 'leave' });
      for (const id of [...call.peers.keys()]) dropPeer(id);
      render();
    });
    setInterval(() => send({ type: 'ping' }), 20000);
    const params = new URLSearchParams(location.hash.slice(1));
    if (params.get('room')) $('room').value = params.get('room');
    if (params.get('relay') === '1') $('relay').checked = true;
    if (params.get('token')) {
      call.token = params.get('token');
      // Keep the token out of the address bar and history.
      history.replaceState(null, '', location.pathname);
    }
    if ($('room').value && (call.token || cookie('__Host-hearth-csrf'))) join();
  });
})();
