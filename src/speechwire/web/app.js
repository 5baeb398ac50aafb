// The demo page: every part of /web/speechwire.js wired together, as an app would.
// URL options: ?voice=<id>  ?format=pcm_22050  ?tap=1 (keep what was sent and played, for tests)

import {
  LatencyPanel,
  MicCapture,
  MicTranscriber,
  StatusIndicator,
  TTSClient,
  TTSPlayer,
  TranscriptView,
  measureRoundTrip,
} from "./speechwire.js";

const $ = (id) => document.getElementById(id);
const options = new URLSearchParams(location.search);
const tap = options.get("tap") === "1";
const outputFormat = options.get("format") || "pcm_22050";

const panel = new LatencyPanel($("latency"));
const view = new TranscriptView($("transcript"));
const demo = { panel, view, errors: [] };
window.speechwireDemo = demo;

function makeTTS(voiceId) {
  const player = new TTSPlayer({ sampleRate: Number(outputFormat.split("_")[1]), tap });
  const tts = new TTSClient({ player, voiceId, outputFormat, recordReceived: tap });
  tts.addEventListener("latency", (e) => panel.record(e.detail.name, e.detail.ms));
  tts.addEventListener("error", (e) => demo.errors.push(e.detail));
  player.addEventListener("stats", (e) => {
    for (const [key, value] of Object.entries(e.detail)) {
      const cell = document.querySelector(`#player-stats [data-stat="${key}"]`);
      if (cell) cell.textContent = key.endsWith("Ms") ? `${Math.round(value)} ms` : String(value);
    }
    panel.gauge("buffer", e.detail.queuedMs);
  });
  demo.ttsStatus = new StatusIndicator($("tts-status"), tts.connection, "TTS");
  tts.connection.open().catch(() => {});
  demo.tts = tts;
  demo.player = player;
  return tts;
}

let tts = makeTTS(options.get("voice") || "joe");

async function loadVoices() {
  const select = $("voice");
  try {
    const { voices } = await (await fetch("/v1/voices")).json();
    // About 130 voices in 93 languages: one group per language, English first, then by name.
    const names = new Intl.DisplayNames(["en"], { type: "language" });
    const groups = new Map();
    for (const v of voices) {
      const code = (v.labels.language || "und").split("-")[0];
      if (!groups.has(code)) groups.set(code, []);
      groups.get(code).push(v);
    }
    // Chromium names most codes; for the few it does not (it echoes the code), the voice's own
    // name says the language ("espeak-ng Bashkir").
    const label = (code) => {
      const name = code === "und" ? "Other" : names.of(code);
      return name && name !== code ? name : groups.get(code)[0].name.replace(/^espeak-ng /, "");
    };
    const order = [...groups.keys()].sort((a, b) =>
      a === "en" ? -1 : b === "en" ? 1 : label(a).localeCompare(label(b)));
    for (const code of order) {
      const group = document.createElement("optgroup");
      group.label = label(code);
      for (const v of groups.get(code)) group.append(new Option(`${v.name} (${v.labels.engine})`, v.voice_id));
      select.append(group);
    }
    select.value = options.get("voice") || "joe";
  } catch {
    select.add(new Option("joe", "joe"));
  }
  select.addEventListener("change", async () => {
    tts.close();
    await tts.player.close();
    tts = makeTTS(select.value);
  });
}
loadVoices();

async function speak() {
  const text = $("tts-text").value.trim();
  if (!text) return;
  await tts.player.start(); // inside the click: browsers allow audio after a gesture
  tts.speak(text);
}
$("speak-button").addEventListener("click", speak);
$("interrupt-button").addEventListener("click", () => tts.interrupt());
$("tts-text").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) speak();
});

const sttStatus = $("stt-status");
sttStatus.classList.add("sw-status");
sttStatus.dataset.state = "idle";
sttStatus.textContent = "STT: idle";

$("mic-start").addEventListener("click", async () => {
  $("mic-start").disabled = true;
  $("mic-mode").disabled = true;
  const capture = new MicCapture({ mode: $("mic-mode").value });
  const transcriber = new MicTranscriber({ capture });
  view.attach(transcriber);
  demo.sttStatus = new StatusIndicator(sttStatus, transcriber.connection, "STT");
  transcriber.addEventListener("latency", (e) => panel.record(e.detail.name, e.detail.ms));
  transcriber.addEventListener("level", (e) => ($("mic-level").value = e.detail.rms));
  transcriber.addEventListener("error", (e) => demo.errors.push(e.detail));
  demo.capture = capture;
  demo.transcriber = transcriber;
  try {
    await transcriber.start();
    $("mic-stop").disabled = false;
  } catch (err) {
    demo.errors.push({ error: "microphone", message: String(err) });
    $("mic-start").disabled = false;
    $("mic-mode").disabled = false;
  }
});

$("mic-stop").addEventListener("click", async () => {
  $("mic-stop").disabled = true;
  await demo.transcriber.stop();
  $("mic-start").disabled = false;
  $("mic-mode").disabled = false;
});

async function pollRoundTrip() {
  try {
    panel.record("round_trip", await measureRoundTrip());
  } catch {
    /* the server is away; the status indicators say so */
  }
  setTimeout(pollRoundTrip, 2000);
}
pollRoundTrip();
