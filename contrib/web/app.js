// The call page: join form, call stage and controls, drawn from a Call
// (call.js).  Test contract (issue 11): window.vcgateCall exposes
// {state, transport, sessionId, participants}; each remote tile has
// data-participant="<user>".
//
// Link form: /?room=R&user=U&name=N&transport=auto|ws|wt&join=1
//            [&token=JWT][&e2ee=0][&gateway=host:port]

import { Call, ROOM_RE, USER_RE } from "./call.js";
import { gatewayBase } from "./transport.js";
import { webCodecsMissing } from "./media.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

// Icons are drawn here (24x24, stroked) so that the page needs no files but its own.
const svg = (body, extra = "") =>
  `<svg viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true" ${extra}>${body}</svg>`;
const SLASH = '<path d="M3 3l18 18"/>';
const MIC = '<rect x="9" y="2.5" width="6" height="11.5" rx="3"/><path d="M5.5 11a6.5 6.5 0 0 0 13 0"/><path d="M12 17.5V21"/>';
const CAM = '<rect x="2.5" y="6" width="13" height="12" rx="2.5"/><path d="M15.5 10.5l6-3.5v10l-6-3.5z"/>';
const ICONS = {
  mic: svg(MIC),
  micOff: svg(MIC + SLASH),
  cam: svg(CAM),
  camOff: svg(CAM + SLASH),
  screen: svg('<rect x="2.5" y="3.5" width="19" height="13" rx="2"/><path d="M8 20.5h8M12 16.5v4"/><path d="M12 13V7.5M9.5 10l2.5-2.5 2.5 2.5"/>'),
  leave: svg('<path d="M2.5 14.2c0-2.6 4.3-4.7 9.5-4.7s9.5 2.1 9.5 4.7l-.6 2.1c-.2.6-.8.9-1.4.7l-3.3-1c-.5-.1-.8-.6-.8-1.1v-1.8c-2.2-.7-4.6-.7-6.8 0v1.8c0 .5-.3 1-.8 1.1l-3.3 1c-.6.2-1.2-.1-1.4-.7z" fill="currentColor" stroke="none"/>'),
  lock: svg('<rect x="4.5" y="10.5" width="15" height="10.5" rx="2.5"/><path d="M8 10.5V7.5a4 4 0 0 1 8 0v3"/>'),
  unlock: svg('<rect x="4.5" y="10.5" width="15" height="10.5" rx="2.5"/><path d="M8 10.5V7.5a4 4 0 0 1 7.6-1.7"/>'),
  people: svg('<circle cx="9" cy="8" r="3.5"/><path d="M2.5 20c0-3.6 2.9-6 6.5-6s6.5 2.4 6.5 6"/><path d="M16 4.8a3.5 3.5 0 0 1 0 6.4M18.5 14.5c1.8.8 3 2.8 3 5.5"/>'),
  link: svg('<path d="M10 14a4.5 4.5 0 0 0 6.4 0l3-3a4.5 4.5 0 0 0-6.4-6.4l-1 1"/><path d="M14 10a4.5 4.5 0 0 0-6.4 0l-3 3a4.5 4.5 0 0 0 6.4 6.4l1-1"/>'),
  bolt: svg('<path d="M13 2.5L4.5 13.5h6.5l-1 8 8.5-11h-6.5z"/>'),
};

let base = null;
let baseError = "";
try {
  base = gatewayBase(location, params.get("gateway"));
} catch (e) {
  baseError = e.message;
}

let call = null;
let failure = "";          // why the last attempt failed before a Call existed
const tiles = new Map();   // key -> tile record

// ------------------------------------------------------------ test contract
window.vcgateCall = {
  get state() { return call ? call.state : failure ? "failed" : "idle"; },
  get transport() { return call && call.transport ? call.transport.kind : null; },
  get sessionId() { return call && call.sessionId ? call.sessionId.toString() : null; },
  get error() { return call ? call.error : failure; },
  get rttMs() { return call && call.rttMs !== null ? Math.round(call.rttMs * 10) / 10 : null; },
  get participants() {
    if (!call) return [];
    return [...call.peers.values()].map((p) => ({
      user: p.user,
      displayName: p.name,
      sessionId: p.key,
      videoFramesDecoded: p.video.framesDecoded,
      audioFramesDecoded: p.audio.framesDecoded,
      screenFramesDecoded: p.screen.framesDecoded,
      e2ee: p.e2ee,
      speaking: p.speaking,
      quality: p.stats.quality,
    }));
  },
  get local() {
    if (!call) return null;
    const l = call.local;
    return { micOn: l.micOn, camOn: l.camOn, sharing: Boolean(l.screen), speaking: l.speaking,
      videoFramesEncoded: l.video ? l.video.framesEncoded : 0,
      audioFramesEncoded: l.audio ? l.audio.sequence : 0,
      videoFramesCaptured: l.video ? l.video.framesIn : 0,
      videoFramesSkipped: l.video ? l.video.framesSkipped : 0,
      videoSettings: l.stream && l.stream.getVideoTracks()[0] ? l.stream.getVideoTracks()[0].getSettings() : null };
  },
  leave: () => leave(),
  startScreenShare: () => call && call.startScreenShare(),
  stopScreenShare: () => call && call.stopScreenShare(),
  setMic: (on) => call && call.setMic(on),
  setCamera: (on) => call && call.setCamera(on),
};

// ------------------------------------------------------------ join form

function identityFrom(name) {
  const s = name.normalize("NFD").replace(/[\u0300-\u036f]/g, "").trim()
    .replace(/\s+/g, "_").replace(/[^A-Za-z0-9_.@+-]/g, "");
  return s || "guest-" + Math.random().toString(36).slice(2, 6);
}

// What a room token says about itself (not verified: the gateway does that).
function tokenClaims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const json = decodeURIComponent(escape(atob(part + "===".slice((part.length + 3) % 4))));
    const c = JSON.parse(json);
    return typeof c === "object" && c ? c : null;
  } catch (e) {
    return null;
  }
}

function readForm() {
  const form = $("join-form");
  const token = $("f-token").value.trim();
  const name = $("f-name").value.trim();
  return {
    name,
    room: $("f-room").value.trim(),
    user: $("f-user").value.trim(),
    token,
    mode: form.elements.transport.value,
    e2ee: $("f-e2ee").checked,
  };
}

function fillForm() {
  if (params.has("name")) $("f-name").value = params.get("name");
  else if (params.has("user")) $("f-name").value = params.get("user");
  if (params.has("room")) $("f-room").value = params.get("room");
  if (params.has("user")) $("f-user").value = params.get("user");
  if (params.has("token")) $("f-token").value = params.get("token");
  const t = { ws: "ws", websocket: "ws", wt: "wt", webtransport: "wt", auto: "auto" }[params.get("transport") || "auto"];
  if (t) $("join-form").elements.transport.value = t;
  if (params.get("e2ee") === "0" || params.get("e2ee") === "false") $("f-e2ee").checked = false;
  if (params.has("user") || params.has("token") || t !== "auto") $("advanced").open = true;
}

function fieldError(input, message) {
  const help = $(input.id + "-help");
  input.setAttribute("aria-invalid", message ? "true" : "false");
  if (help) {
    if (!help.dataset.text) help.dataset.text = help.textContent;
    help.textContent = message || help.dataset.text;
    help.classList.toggle("error", Boolean(message));
  }
}

/** The options to join with, or null after showing what is wrong. */
function validate(f) {
  let bad = null;
  fieldError($("f-name"), "");
  fieldError($("f-room"), "");
  fieldError($("f-user"), "");
  if (f.token) {
    const c = tokenClaims(f.token);
    if (!c || typeof c.sub !== "string") bad = [$("f-token"), "This is not a room token (a JWT with a sub claim)."];
    else {
      f.user = c.sub;
      if (typeof c.room === "string") f.room = c.room;
      if (!f.name) f.name = typeof c.display_name === "string" && c.display_name ? c.display_name : c.sub;
    }
  } else {
    if (!f.room) bad = [$("f-room"), "Enter a room name."];
    else if (!ROOM_RE.test(f.room)) {
      bad = [$("f-room"), `"${f.room}" is not a valid room name: use only letters, digits, hyphen and underscore.`,
        "Use only letters, digits, hyphen and underscore."];
    }
    else if (f.room.length > 128) bad = [$("f-room"), "The room name is longer than 128 characters."];
    if (!bad && !f.name && !f.user) bad = [$("f-name"), "Enter your name."];
    if (!bad) {
      if (!f.user) f.user = identityFrom(f.name);
      if (!USER_RE.test(f.user)) {
        bad = [$("f-user"), `"${f.user}" is not a valid identity: use letters, digits and _ - . @ +`,
          "Use letters, digits and _ - . @ + only."];
      }
    }
    if (!f.name) f.name = f.user;
  }
  if (bad) {
    // The alert says it in full; the field says what to do.
    if (bad[0] !== $("f-token")) fieldError(bad[0], bad[2] || bad[1]);
    if (bad[0] === $("f-user") || bad[0] === $("f-token")) $("advanced").open = true;
    fail(bad[1]);
    bad[0].focus();
    return null;
  }
  return f;
}

function environmentProblem() {
  if (baseError) return baseError;
  if (!window.isSecureContext || !crypto.subtle) {
    return "This page must be opened over https:// (or from localhost / 127.0.0.1): browsers allow the camera and encryption only there.";
  }
  const missing = webCodecsMissing();
  if (missing.length) return `This browser lacks WebCodecs (${missing.join(", ")}); use a current Chrome, Edge, Firefox or Safari.`;
  return "";
}

function fail(message) {
  failure = message;
  $("join-error-text").textContent = message;
  $("join-error").hidden = false;
  showView("join");
  setJoining(false);
}

function setJoining(on) {
  const b = $("join-btn");
  b.disabled = on;
  b.textContent = on ? "Connecting…" : "Join call";
}

function showView(which) {
  $("join-view").hidden = which !== "join";
  $("call-view").hidden = which !== "call";
}

// ------------------------------------------------------------ joining

async function localMedia() {
  const video = { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 30, max: 30 } };
  const audio = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };
  const md = navigator.mediaDevices;
  let first;
  for (const [c, missing] of [[{ video, audio }, ""], [{ audio }, "camera"], [{ video }, "microphone"]]) {
    try {
      const stream = await md.getUserMedia(c);
      return { stream, note: missing ? `No ${missing} available: joined without it.` : "" };
    } catch (e) {
      first = first || e;
    }
  }
  return { stream: null, note: `Camera and microphone unavailable (${first.name}): you can still see and hear others.` };
}

async function join(f) {
  const problem = environmentProblem();
  if (problem) return fail(problem);
  failure = "";
  $("join-error").hidden = true;
  setJoining(true);
  const c = new Call({ user: f.user, displayName: f.name, room: f.room, token: f.token, mode: f.mode, e2ee: f.e2ee, base });
  call = c;
  c.addEventListener("state", () => onState(c));
  c.addEventListener("peers", () => { if (c === call) renderTiles(); });
  c.addEventListener("local", () => { if (c === call) renderLocal(); });
  c.addEventListener("toast", (e) => toast(e.detail));
  const media = localMedia();
  try {
    await c.join();
  } catch (e) {
    media.then((m) => m.stream && m.stream.getTracks().forEach((t) => t.stop()));
    return;
  }
  const m = await media;
  if (call !== c || c.state !== "joined") {
    if (m.stream) m.stream.getTracks().forEach((t) => t.stop());
    return;
  }
  c.startMedia(m.stream);
  if (m.note) toast(m.note);
}

function onState(c) {
  if (c !== call) return;
  // A joined call that lost its connection stays on screen while it reconnects.
  $("reconnecting").hidden = !(c.state === "connecting" && !$("call-view").hidden);
  if (c.state === "joined") {
    setJoining(false);
    $("room-name").textContent = c.room;
    showView("call");
    renderTiles();
    renderLocal();
    updateAudioUnlock();
  } else if (c.state === "failed") {
    fail(c.error);
    clearTiles();
  } else if (c.state === "idle") {
    showView("join");
    setJoining(false);
    clearTiles();
  }
}

function leave() {
  if (call) call.leave();
  call = null;
  failure = "";
  clearTiles();
  showView("join");
  setJoining(false);
}

// ------------------------------------------------------------ tiles

function initials(name) {
  const parts = name.replace(/[_.@+-]+/g, " ").trim().split(/\s+/).filter(Boolean);
  const s = parts.length > 1 ? parts[0][0] + parts[parts.length - 1][0] : (parts[0] || "?").slice(0, 2);
  return s.toUpperCase();
}

function hue(s) {
  let h = 0;
  for (const ch of s) h = (h * 31 + ch.codePointAt(0)) >>> 0;
  return h % 360;
}

function el(tag, cls, html) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (html !== undefined) e.innerHTML = html;
  return e;
}

function makeTile({ key, user, name, local = false, screen = false }) {
  const root = el("article", "tile" + (screen ? " screen" : "") + " no-video");
  if (screen) root.dataset.screen = user;
  else if (local) root.dataset.local = "";
  else root.dataset.participant = user;
  // Own media plays from its stream in a <video> (the camera mirrored, as a
  // mirror would show it); others' are drawn from their decoders.
  const media = local ? el("video", screen ? "" : "mirror") : el("canvas");
  if (local) { media.muted = true; media.playsInline = true; media.autoplay = true; }
  const avatar = el("div", "avatar");
  const circle = el("span");
  avatar.append(circle);
  const top = el("div", "tile-top");
  const e2ee = el("span", "pill");
  const quality = el("span", "pill", '<span class="bars"><i></i><i></i><i></i></span>');
  if (!screen) top.append(e2ee, quality);
  const bottom = el("div", "tile-bottom");
  const tag = el("span", "name-tag");
  const muted = el("span", "muted-icon", ICONS.micOff);
  muted.hidden = true;
  const label = el("span", "name");
  tag.append(muted, label);
  bottom.append(tag);
  root.append(media, avatar, top, bottom);
  const t = { key, root, media, circle, label, muted, e2ee, quality, local, screen, shown: null };
  setTileName(t, name, user);
  tiles.set(key, t);
  return t;
}

function setTileName(t, name, user) {
  if (t.name === name) return;
  t.name = name;
  const text = t.screen ? (t.local ? "Your screen" : `${name}'s screen`) : t.local ? `${name} (you)` : name;
  t.label.textContent = text;
  t.root.setAttribute("aria-label", text);
  t.circle.textContent = initials(name);
  t.circle.style.setProperty("--avatar", `hsl(${hue(user || name)} 55% 45%)`);
}

function clearTiles() {
  for (const t of tiles.values()) t.root.remove();
  tiles.clear();
  layout();
}

function renderTiles() {
  if (!call) return;
  const stage = $("stage");
  if (!tiles.has("local")) {
    stage.append(makeTile({ key: "local", user: call.user, name: call.displayName, local: true }).root);
  }
  const want = new Set(["local", "local-screen"]);
  for (const p of call.peers.values()) {
    want.add(p.key);
    want.add(p.key + "/screen");
    let t = tiles.get(p.key);
    if (!t) {
      t = makeTile({ key: p.key, user: p.user, name: p.name });
      stage.append(t.root);
      p.video.attach(t.media);
      const s = makeTile({ key: p.key + "/screen", user: p.user, name: p.name, screen: true });
      s.root.hidden = true;
      stage.prepend(s.root);
      p.screen.attach(s.media);
    }
    setTileName(t, p.name, p.user);
    setTileName(tiles.get(p.key + "/screen"), p.name, p.user);
  }
  for (const [key, t] of tiles) {
    if (!want.has(key)) { t.root.remove(); tiles.delete(key); }
  }
  refresh();
}

function renderLocal() {
  if (!call) return;
  const t = tiles.get("local");
  const l = call.local;
  if (t) {
    if (t.media.srcObject !== l.stream) t.media.srcObject = l.stream;
    t.root.classList.toggle("no-video", !(l.stream && l.camOn && l.stream.getVideoTracks().length));
    t.muted.hidden = l.micOn;
  }
  // The own screen share, shown as others see it.
  let s = tiles.get("local-screen");
  if (l.screenStream && !s) {
    s = makeTile({ key: "local-screen", user: call.user, name: call.displayName, screen: true, local: true });
    $("stage").prepend(s.root);
  }
  if (s) {
    s.root.hidden = !l.screenStream;
    if (s.media.srcObject !== l.screenStream) s.media.srcObject = l.screenStream;
    s.root.classList.toggle("no-video", !l.screenStream);
  }
  setControl("btn-mic", l.micOn, l.micOn ? ICONS.mic : ICONS.micOff, "Microphone",
    l.micOn ? "Mute microphone" : "Unmute microphone", !l.audio);
  setControl("btn-cam", l.camOn, l.camOn ? ICONS.cam : ICONS.camOff, "Camera",
    l.camOn ? "Turn camera off" : "Turn camera on", !l.video);
  const canShare = Boolean(navigator.mediaDevices && navigator.mediaDevices.getDisplayMedia);
  setControl("btn-screen", Boolean(l.screen), ICONS.screen, "Share screen",
    l.screen ? "Stop sharing your screen" : "Share your screen", !canShare);
  $("btn-screen").classList.toggle("on-air", Boolean(l.screen));
  $("btn-screen").classList.remove("off");
  layout();
}

function setControl(id, on, icon, label, title, disabled) {
  const b = $(id);
  if (b.dataset.icon !== icon) { b.innerHTML = icon; b.dataset.icon = icon; }
  b.setAttribute("aria-label", label);
  b.setAttribute("aria-pressed", String(on));
  b.title = disabled ? `${label}: not available` : title;
  b.disabled = Boolean(disabled);
  b.classList.toggle("off", !on && !disabled);
}

const QUALITY_TEXT = ["No signal", "Poor connection", "Fair connection", "Good connection"];

/** The parts of the stage that change all the time: speaking, quality, video on/off. */
function refresh() {
  if (!call || call.state !== "joined") return;
  const now = performance.now();
  let visibleChanged = false;
  for (const p of call.peers.values()) {
    const t = tiles.get(p.key);
    const s = tiles.get(p.key + "/screen");
    if (!t || !s) continue;
    const hasVideo = p.videoEnabled && now - p.video.lastFrameAt < 2000;
    t.root.classList.toggle("no-video", !hasVideo);
    t.root.classList.toggle("speaking", p.speaking && p.audioEnabled);
    t.muted.hidden = p.audioEnabled;
    const q = p.stats.quality;
    t.quality.className = "pill q" + q;
    const rtt = call.rttMs !== null ? ` · ${Math.round(call.rttMs)} ms to the gateway` : "";
    t.quality.title = `${QUALITY_TEXT[q]}: ${p.stats.fps} fps, ${p.stats.lossPct.toFixed(1)}% lost, ${Math.round(p.jitterMs)} ms jitter${rtt}`;
    t.quality.setAttribute("aria-label", t.quality.title);
    const e2ee = p.e2ee ? "on" : p.plaintext ? "off" : !call.e2ee && p.undecryptable ? "locked" : "wait";
    if (t.e2eeState !== e2ee) {
      t.e2eeState = e2ee;
      t.e2ee.className = "pill" + (e2ee === "on" ? " e2ee-on" : e2ee === "off" ? " e2ee-off" : "");
      t.e2ee.innerHTML = e2ee === "off" ? ICONS.unlock : ICONS.lock;
      t.e2ee.title = {
        on: "End-to-end encrypted",
        off: "Not encrypted: this participant sends plaintext",
        locked: "Encrypted: rejoin with end-to-end encryption on to see and hear this participant",
        wait: "Waiting for this participant's key",
      }[e2ee];
      t.e2ee.setAttribute("aria-label", t.e2ee.title);
    }
    const sharing = p.screenEnabled !== false && now - p.screen.lastFrameAt < 3000;
    if (s.root.hidden === sharing) { s.root.hidden = !sharing; visibleChanged = true; }
    s.root.classList.toggle("no-video", !sharing);
  }
  const lt = tiles.get("local");
  if (lt) {
    lt.root.classList.toggle("speaking", call.local.speaking);
    const e2ee = call.e2ee ? "on" : "off";
    if (lt.e2eeState !== e2ee) {
      lt.e2eeState = e2ee;
      lt.e2ee.className = "pill e2ee-" + e2ee;
      lt.e2ee.innerHTML = call.e2ee ? ICONS.lock : ICONS.unlock;
      lt.e2ee.title = call.e2ee ? "You send end-to-end encrypted media" : "You send unencrypted media";
      lt.e2ee.setAttribute("aria-label", lt.e2ee.title);
    }
    lt.quality.hidden = true;
  }
  renderStatus();
  if (visibleChanged) layout();
}

/** A link that brings someone else to this room (the form filled in but for the name). */
function inviteLink() {
  const q = new URLSearchParams({ room: call.room });
  if (params.has("gateway")) q.set("gateway", params.get("gateway"));
  return location.origin + location.pathname + "?" + q.toString();
}

async function copyInvite() {
  if (!call) return;
  const link = inviteLink();
  try {
    await navigator.clipboard.writeText(link);
    toast("Invitation link copied");
  } catch (e) {
    toast("Invite others with " + link);
  }
}

function renderStatus() {
  const n = call.peers.size + 1;
  const people = $("people-badge");
  const phtml = ICONS.people + `<span>${n}</span><span class="long">${n === 1 ? "person" : "people"}</span>`;
  if (people.dataset.html !== phtml) { people.innerHTML = phtml; people.dataset.html = phtml; }
  people.setAttribute("aria-label", `${n} ${n === 1 ? "person" : "people"} in the call`);
  const e = $("e2ee-badge");
  const anyPlain = [...call.peers.values()].some((p) => p.plaintext);
  const enc = call.e2ee && !anyPlain;
  e.className = "badge " + (enc ? "ok" : "warn");
  const text = call.e2ee ? (anyPlain ? "Partly encrypted" : "End-to-end encrypted") : "Not encrypted";
  const html = (enc ? ICONS.lock : ICONS.unlock) + `<span class="long">${text}</span>`;
  if (e.dataset.html !== html) { e.innerHTML = html; e.dataset.html = html; }
  e.setAttribute("aria-label", text);
  e.title = call.e2ee ? (anyPlain ? "Someone in the call sends plaintext" : "Only the people in the call can decrypt the media") : "Encryption is off for your media";
  const t = $("transport-badge");
  const kind = call.transport ? (call.transport.kind === "webtransport" ? "WebTransport" : "WebSocket") : "";
  const rtt = call.rttMs !== null ? `<span class="rtt">${Math.max(1, Math.round(call.rttMs))} ms</span>` : "";
  const thtml = ICONS.bolt + `<span class="long">${kind}</span>${rtt}`;
  if (t.dataset.html !== thtml) { t.innerHTML = thtml; t.dataset.html = thtml; }
  t.title = `${kind}, round trip to the gateway`;
  const start = call.startTime ? call.startTime : Date.now() - (performance.now() - call.joinedAt);
  const secs = Math.max(0, Math.floor((Date.now() - start) / 1000));
  const hms = [Math.floor(secs / 3600), Math.floor(secs / 60) % 60, secs % 60];
  $("timer").textContent = (hms[0] ? hms[0] + ":" : "") + String(hms[1]).padStart(hms[0] ? 2 : 1, "0") + ":" + String(hms[2]).padStart(2, "0");
}

// The tile size that fills the stage best: for each column count, the
// cells' size, with the tile's aspect kept between 3:4 and 16:9 (video is
// cropped to fit), scored by area with a penalty for leaving 4:3, which
// is heavier for portrait tiles (they crop a landscape camera most).
function layout() {
  const stage = $("stage");
  const n = [...stage.children].filter((c) => !c.hidden).length;
  if (!n) return;
  const cs = getComputedStyle(stage);
  const gap = 10;
  const W = stage.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight);
  const H = stage.clientHeight - parseFloat(cs.paddingTop) - parseFloat(cs.paddingBottom);
  if (W <= 0 || H <= 0) return;
  let best = null;
  for (let cols = 1; cols <= n; cols++) {
    const rows = Math.ceil(n / cols);
    let w = (W - gap * (cols - 1)) / cols, h = (H - gap * (rows - 1)) / rows;
    if (w <= 0 || h <= 0) continue;
    if (w / h > 16 / 9) w = h * 16 / 9;
    if (w / h < 3 / 4) h = w * 4 / 3;
    const skew = Math.log((w / h) / (4 / 3));
    const score = w * h * (1 - (skew < 0 ? 0.8 : 0.35) * Math.abs(skew));
    if (!best || score > best.score) best = { cols, w, h, score };
  }
  stage.style.setProperty("--tile-w", Math.floor(best.w) + "px");
  stage.style.setProperty("--tile-h", Math.floor(best.h) + "px");
  stage.style.setProperty("--gap", gap + "px");
}

// ------------------------------------------------------------ the rest

function toast(text) {
  const box = $("toasts");
  const t = el("div", "toast");
  t.textContent = text;
  box.append(t);
  while (box.children.length > 3) box.firstChild.remove();
  setTimeout(() => t.remove(), 4000);
}

function updateAudioUnlock() {
  const ctx = call && call.audioOut.ctx;
  $("audio-unlock").hidden = !ctx || ctx.state === "running";
  if (ctx && !ctx.onstatechange) ctx.onstatechange = updateAudioUnlock;
}

function init() {
  fillForm();
  const where = base ? base.http.replace(/^https?:\/\//, "") : "";
  $("footnote").textContent = where ? `Gateway ${where}` : "";
  $("join-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const f = validate(readForm());
    if (f) join(f);
  });
  $("f-room").addEventListener("input", () => fieldError($("f-room"), ""));
  $("btn-mic").addEventListener("click", () => call && call.setMic(!call.local.micOn));
  $("btn-cam").addEventListener("click", () => call && call.setCamera(!call.local.camOn));
  $("btn-screen").addEventListener("click", async () => {
    if (!call) return;
    if (call.local.screen) return call.stopScreenShare();
    try {
      await call.startScreenShare();
    } catch (e) {
      if (e.name !== "NotAllowedError") toast("Screen sharing failed: " + e.message);
    }
  });
  $("btn-invite").innerHTML = ICONS.link;
  $("btn-invite").setAttribute("aria-label", "Copy invitation link");
  $("btn-invite").title = "Copy a link to this room";
  $("btn-invite").addEventListener("click", () => copyInvite());
  $("btn-leave").innerHTML = ICONS.leave + '<span class="label">Leave</span>';
  $("btn-leave").setAttribute("aria-label", "Leave call");
  $("btn-leave").addEventListener("click", () => leave());
  $("audio-unlock-btn").addEventListener("click", () => call && call.audioOut.resume().then(updateAudioUnlock));
  // Closing the tab leaves the call at once: a WebTransport session that
  // the browser drops with its tab is otherwise noticed by the gateway only
  // at its idle timeout, and the others would see a frozen tile until then.
  window.addEventListener("pagehide", () => { if (call) call.leave(); });
  new ResizeObserver(() => layout()).observe($("stage"));
  setInterval(refresh, 250);
  const problem = environmentProblem();
  if (problem) fail(problem);
  else if (params.get("join") === "1") {
    const f = validate(readForm());
    if (f) join(f);
  }
}

init();
