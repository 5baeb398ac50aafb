// The official JS SDK's speechToText.realtime (Node, @elevenlabs/elevenlabs-js, unchanged) against
// a speechwire server: stream a 16 kHz mono WAV at real-time pace, then commit() as the SDK's
// examples do (after VAD has already committed, in VAD mode), and print what arrived as one JSON
// line for pytest to score.
//
// usage: node sdk_realtime.mjs <base_url http://...> <file.wav> <manual|vad>
import { readFileSync } from "node:fs";
import { ElevenLabsClient } from "@elevenlabs/elevenlabs-js";
import { AudioFormat, CommitStrategy, RealtimeEvents } from "@elevenlabs/elevenlabs-js";

const [baseUrl, wavPath, strategy] = process.argv.slice(2);

function pcmOfWav(path) {
  const buf = readFileSync(path);
  let at = 12;
  while (at + 8 <= buf.length) {
    const id = buf.toString("ascii", at, at + 4);
    const size = buf.readUInt32LE(at + 4);
    if (id === "data") return buf.subarray(at + 8, at + 8 + size);
    at += 8 + size + (size % 2);
  }
  throw new Error("no data chunk");
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const until = async (cond, ms) => {
  for (let t = 0; t < ms && !cond(); t += 50) await sleep(50);
};

const out = { committed: [], partials: 0, errors: [], config: null, closedEarly: null };
const client = new ElevenLabsClient({ apiKey: "unused-locally", baseUrl });
const connection = await client.speechToText.realtime.connect({
  modelId: "scribe_v2_realtime",
  audioFormat: AudioFormat.PCM_16000,
  sampleRate: 16000,
  commitStrategy: strategy === "vad" ? CommitStrategy.VAD : CommitStrategy.MANUAL,
  vadSilenceThresholdSecs: 0.5,
  includeTimestamps: true,
});
let closing = false;
connection.on(RealtimeEvents.SESSION_STARTED, (m) => (out.config = m.config));
connection.on(RealtimeEvents.PARTIAL_TRANSCRIPT, () => out.partials++);
connection.on(RealtimeEvents.COMMITTED_TRANSCRIPT, (m) => out.committed.push(m.text));
connection.on(RealtimeEvents.ERROR, (e) => out.errors.push(String(e?.error ?? e?.message ?? e)));
connection.on(RealtimeEvents.CLOSE, (e) => {
  if (!closing) out.closedEarly = e?.code ?? true;
});
await until(() => out.config !== null, 10000);

const audio = Buffer.concat([pcmOfWav(wavPath), Buffer.alloc(16000 * 2 * 1.2)]);
const step = 3200; // 100 ms
const t0 = Date.now();
for (let i = 0, n = 0; i < audio.length; i += step, n++) {
  connection.send({ audioBase64: audio.subarray(i, i + step).toString("base64") });
  const due = t0 + (n + 1) * 100 - Date.now();
  if (due > 0) await sleep(due);
}
if (strategy === "vad") await until(() => out.committed.length > 0, 5000);
const before = out.committed.length;
connection.commit(); // in VAD mode nothing is pending any more: must be harmless
await until(() => out.committed.length > before, 8000);
out.afterFinalCommit = out.committed.slice(before);
await sleep(300);
closing = true;
connection.close();
console.log(JSON.stringify(out));
process.exit(0);
