// Hearth's web console: one WebRTC call at a time, with an ephemeral key from the server.
// Plain JavaScript, no build step and nothing fetched from elsewhere (it works offline).
"use strict";

const $ = (id) => document.getElementById(id);
const LOUD = 0.02;              // RMS above which the page counts a frame as sound
const METER_MS = 20;            // level sampling period

const state = {
  wantCall: false,
  pc: null,
  dc: null,
  stream: null,
  secret: null,
  callId: null,
  attempts: 0,
  reconnectTimer: null,
  audioContext: null,
  micLevel: 0,
  replyLevel: 0,
  lastLoudMicAt: null,          // performance.now() of the last loud mic frame
  pendingTurn: null,            // the turn whose first reply audio the page waits for
  turns: [],                    // {itemId, latencyMs}
  replyPlaying: false,
  bubbles: new Map(),           // item id or call id -> <li>
  events: [],
};
window.hearthConsole = state;   // for diagnostics (and the browser test)

// ------------------------------------------------------------------ status

function setStatus(kind, text) {
  const el = $("status");
  el.className = `status ${kind}`;
  el.textContent = text;
  el.dataset.state = kind;
}

// ------------------------------------------------------------------ server API

class Unreachable extends Error {}

async function post(path, body, headers = {}) {
  let response;
  try {
    response = await fetch(path, {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", ...headers},
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    throw new Unreachable(String(err));
  }
  let data = null;
  try { data = await response.json(); } catch (_) { /* empty body */ }
  return {ok: response.ok, status: response.status, data};
}

function errorText(data, fallback) {
  return (data && data.error && data.error.message) || fallback;
}

// ------------------------------------------------------------------ boot and sign-in

async function boot() {
  let status;
  try {
    const response = await fetch("/console/api/status", {credentials: "same-origin"});
    status = await response.json();
  } catch (err) {
    setStatus("bad", "Server unreachable — retrying…");
    setTimeout(boot, 3000);
    return;
  }
  if (status.sign_in_required && !status.signed_in) {
    $("signin").hidden = false;
    $("app").hidden = true;
    setStatus("idle", "Pair this browser to start");
    return;
  }
  $("signin").hidden = true;
  $("app").hidden = false;
  if (!$("instructions").value && status.defaults) $("instructions").value = status.defaults.instructions || "";
  if (status.defaults && status.defaults.voice) $("voice").value = status.defaults.voice;
  if (!state.wantCall) setStatus("idle", "Ready — press Talk");
}

$("signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = $("signin-error");
  error.hidden = true;
  try {
    const result = await post("/console/api/sign-in", {code: $("pairing-code").value});
    if (!result.ok) {
      error.textContent = errorText(result.data, "Pairing failed.");
      error.hidden = false;
      return;
    }
  } catch (err) {
    error.textContent = "Server unreachable.";
    error.hidden = false;
    return;
  }
  boot();
});

// ------------------------------------------------------------------ settings

function sessionConfig() {
  const turn = {type: $("turn-detection").value};
  if (turn.type === "server_vad") turn.silence_duration_ms = Number($("silence-ms").value) || 500;
  return {
    type: "realtime",
    instructions: $("instructions").value,
    audio: {
      input: {turn_detection: turn, transcription: {model: "whisper-1"}},
      output: {voice: $("voice").value},
    },
  };
}

// ------------------------------------------------------------------ levels and latency

function analyser(stream) {
  const node = state.audioContext.createAnalyser();
  node.fftSize = 1024;
  state.audioContext.createMediaStreamSource(stream).connect(node);
  const buffer = new Float32Array(node.fftSize);
  return () => {
    node.getFloatTimeDomainData(buffer);
    let sum = 0;
    for (const x of buffer) sum += x * x;
    return Math.sqrt(sum / buffer.length);
  };
}

let micProbe = null;
let replyProbe = null;

setInterval(() => {
  const now = performance.now();
  if (micProbe) {
    state.micLevel = micProbe();
    $("mic-level").value = Math.min(1, state.micLevel * 4);
    if (state.micLevel > LOUD) state.lastLoudMicAt = now;
  }
  if (replyProbe) {
    state.replyLevel = replyProbe();
    $("reply-level").value = Math.min(1, state.replyLevel * 4);
    const turn = state.pendingTurn;
    if (turn && state.replyLevel > LOUD) {
      turn.latencyMs = Math.round(now - turn.speechEndAt);
      state.pendingTurn = null;
      state.turns.push(turn);
      const li = document.createElement("li");
      li.textContent = `${turn.latencyMs} ms`;
      li.title = `turn ${turn.itemId}: your last sound → first reply sound`;
      $("latency").append(li);
    }
  }
}, METER_MS);

// ------------------------------------------------------------------ the call

$("talk").addEventListener("click", () => (state.wantCall ? stopCall() : startCall()));

async function startCall() {
  state.wantCall = true;
  state.attempts = 0;
  const talk = $("talk");
  talk.setAttribute("aria-pressed", "true");
  talk.textContent = "Stop";
  if (!state.audioContext) state.audioContext = new AudioContext();
  await state.audioContext.resume();
  setStatus("busy", "Asking for the microphone…");
  const processing = $("echo-cancellation").checked;
  try {
    state.stream = await navigator.mediaDevices.getUserMedia({
      audio: {echoCancellation: processing, noiseSuppression: processing, autoGainControl: processing},
    });
  } catch (err) {
    const insecure = !window.isSecureContext || !navigator.mediaDevices;
    setStatus("bad", insecure ? "Microphone needs HTTPS — open the console over https:// (see docs/webrtc.md)"
      : "Microphone blocked — allow it in the browser's site settings, then press Talk");
    resetTalk();
    return;
  }
  micProbe = analyser(state.stream);
  await connect();
}

async function connect() {
  state.reconnectTimer = null;
  if (!state.wantCall) return;
  setStatus("busy", state.attempts ? "Reconnecting…" : "Connecting…");
  let result;
  try {
    result = await post("/console/api/client-secret", {session: sessionConfig()});
  } catch (err) {
    scheduleReconnect("server unreachable");
    return;
  }
  if (result.status === 401) {
    stopCall();
    boot();
    return;
  }
  if (!result.ok) {
    setStatus("bad", errorText(result.data, "The server refused the settings."));
    stopCall(false);
    return;
  }
  state.secret = result.data.value;

  const pc = new RTCPeerConnection();
  state.pc = pc;
  for (const track of state.stream.getAudioTracks()) pc.addTrack(track, state.stream);
  const dc = pc.createDataChannel("oai-events");
  state.dc = dc;
  dc.onmessage = (message) => onEvent(JSON.parse(message.data));
  pc.ontrack = (event) => {
    const remote = event.streams[0] || new MediaStream([event.track]);
    $("reply-audio").srcObject = remote;
    replyProbe = analyser(remote);
  };
  pc.onconnectionstatechange = () => {
    if (pc !== state.pc) return;
    const s = pc.connectionState;
    if (s === "connected") {
      state.attempts = 0;
      setStatus("ok", "Listening — speak now");
    } else if (s === "disconnected") {
      setStatus("busy", "Reconnecting… (connection interrupted)");
    } else if (s === "failed" || s === "closed") {
      teardown();
      scheduleReconnect("connection lost");
    }
  };

  try {
    await pc.setLocalDescription(await pc.createOffer());
    let response;
    try {
      response = await fetch("/v1/realtime/calls", {
        method: "POST",
        headers: {"Authorization": `Bearer ${state.secret}`, "Content-Type": "application/sdp"},
        body: pc.localDescription.sdp,
      });
    } catch (err) {
      teardown();
      scheduleReconnect("server unreachable");
      return;
    }
    if (!response.ok) {
      let data = null;
      try { data = await response.json(); } catch (_) { /* not JSON */ }
      throw new Error(errorText(data, `the server answered ${response.status}`));
    }
    state.callId = (response.headers.get("Location") || "").split("/").pop();
    $("call-info").textContent = `call ${state.callId}`;
    await pc.setRemoteDescription({type: "answer", sdp: await response.text()});
  } catch (err) {
    teardown();
    setStatus("bad", `Could not start the call: ${err.message}`);
    stopCall(false);
  }
}

function scheduleReconnect(reason) {
  if (!state.wantCall || state.reconnectTimer) return;
  state.attempts += 1;
  const delay = Math.min(1000 * 2 ** (state.attempts - 1), 15000);
  setStatus(reason === "server unreachable" ? "bad" : "busy",
    reason === "server unreachable" ? `Server unreachable — reconnecting in ${Math.round(delay / 1000)} s…`
      : `Reconnecting… (${reason})`);
  state.reconnectTimer = setTimeout(connect, delay);
}

function teardown() {
  const {pc, secret, callId} = state;
  state.pc = null;
  state.dc = null;
  replyProbe = null;
  if (pc) pc.close();
  if (callId && secret) {
    fetch(`/v1/realtime/calls/${callId}/hangup`, {method: "POST", headers: {"Authorization": `Bearer ${secret}`}})
      .catch(() => {});
  }
  state.callId = null;
  state.secret = null;
  $("call-info").textContent = "";
}

function resetTalk() {
  state.wantCall = false;
  $("talk").setAttribute("aria-pressed", "false");
  $("talk").textContent = "Talk";
}

function stopCall(showIdle = true) {
  if (state.reconnectTimer) clearTimeout(state.reconnectTimer);
  state.reconnectTimer = null;
  resetTalk();
  teardown();
  if (state.stream) for (const track of state.stream.getTracks()) track.stop();
  state.stream = null;
  micProbe = null;
  if (showIdle) setStatus("idle", "Ready — press Talk");
}

// ------------------------------------------------------------------ events

function bubble(key, role, text, {partial = false, append = false} = {}) {
  let li = state.bubbles.get(key);
  if (!li) {
    li = document.createElement("li");
    li.className = role;
    li.dataset.key = key;
    state.bubbles.set(key, li);
    $("transcript").append(li);
  }
  li.textContent = append ? li.textContent + text : text;
  li.classList.toggle("partial", partial);
  li.scrollIntoView({block: "nearest"});
  return li;
}

function onEvent(event) {
  logEvent("←", event);
  switch (event.type) {
    case "input_audio_buffer.speech_started":
      if (state.replyPlaying) logNote("barge-in: you spoke over the reply");
      break;
    case "input_audio_buffer.speech_stopped":
      state.pendingTurn = {itemId: event.item_id, speechEndAt: state.lastLoudMicAt ?? performance.now()};
      break;
    case "conversation.item.input_audio_transcription.delta":
      bubble(event.item_id, "user", event.delta, {partial: true, append: true});
      break;
    case "conversation.item.input_audio_transcription.completed":
      bubble(event.item_id, "user", event.transcript || "…");
      break;
    case "response.output_audio_transcript.delta":
    case "response.output_text.delta":
      bubble(event.item_id, "assistant", event.delta, {partial: true, append: true});
      break;
    case "response.output_audio_transcript.done":
    case "response.output_text.done":
      bubble(event.item_id, "assistant", event.transcript ?? event.text ?? "");
      break;
    case "response.output_item.done":
      if (event.item && event.item.type === "function_call") {
        bubble(event.item.call_id, "tool", `tool call ${event.item.name}(${event.item.arguments})`);
      }
      break;
    case "conversation.item.added":
    case "conversation.item.done":
      if (event.item && event.item.type === "function_call_output") {
        const li = state.bubbles.get(event.item.call_id) || bubble(event.item.call_id, "tool", "tool call");
        if (!li.dataset.result) {
          li.dataset.result = "1";
          const result = document.createElement("div");
          result.className = "result";
          result.textContent = `→ ${event.item.output}`;
          li.append(result);
        }
      } else if (event.item && event.item.role === "user") {
        const part = (event.item.content || []).find((p) => p.type === "input_text");
        if (part) bubble(event.item.id, "user", part.text);
      }
      break;
    case "output_audio_buffer.started":
      state.replyPlaying = true;
      break;
    case "output_audio_buffer.stopped":
    case "output_audio_buffer.cleared":
      state.replyPlaying = false;
      break;
    case "conversation.item.truncated": {
      // A reply cut off while it played (barge-in, a clear): the item keeps only what was heard.
      const li = state.bubbles.get(event.item_id);
      if (li) li.classList.add("interrupted");
      break;
    }
    case "response.done": {
      const response = event.response || {};
      if (response.status === "cancelled") {
        for (const item of response.output || []) {
          const li = state.bubbles.get(item.id);
          if (li) li.classList.add("interrupted");
        }
      }
      break;
    }
    case "error":
      setStatus("bad", `Server error: ${event.error && event.error.message}`);
      setTimeout(() => { if (state.pc && state.pc.connectionState === "connected") setStatus("ok", "Listening — speak now"); }, 4000);
      break;
    default:
      break;
  }
}

// ------------------------------------------------------------------ the event log

function logNote(text) {
  logEvent("·", {type: text});
}

function logEvent(dir, event) {
  state.events.push({dir, event});
  if (state.events.length > 2000) state.events.shift();
  const li = document.createElement("li");
  li.dataset.type = event.type;
  if (event.type === "error") li.classList.add("error");
  const arrow = document.createElement("span");
  arrow.className = "dir";
  arrow.textContent = dir;
  li.append(arrow, document.createTextNode(`${event.type} ${JSON.stringify(event).slice(0, 2000)}`));
  li.addEventListener("click", () => li.classList.toggle("open"));
  li.hidden = !visible(event.type);
  const log = $("log");
  log.append(li);
  while (log.children.length > 500) log.firstChild.remove();
  li.scrollIntoView({block: "nearest"});
}

function visible(type) {
  if (!$("log-deltas").checked && type.endsWith(".delta")) return false;
  const terms = $("log-filter").value.trim().split(/\s+/).filter(Boolean);
  return terms.every((term) => (term.startsWith("-") ? !type.includes(term.slice(1)) : type.includes(term)));
}

function refilter() {
  for (const li of $("log").children) li.hidden = !visible(li.dataset.type);
}

$("log-filter").addEventListener("input", refilter);
$("log-deltas").addEventListener("change", refilter);
$("log-clear").addEventListener("click", () => { $("log").replaceChildren(); });

window.addEventListener("pagehide", () => { if (state.wantCall) stopCall(false); });
boot();
