// The official JS SDK's plain HTTP calls (Node, @elevenlabs/elevenlabs-js, unchanged but for its
// baseUrl) against a speechwire server: textToSpeech.convert, convertWithTimestamps and stream
// with a premade voice id, speechToText.convert (batch) on a WAV file, voices.get / search /
// settings.getDefault and user.get / subscription.get (their responses parse in the SDK). Audio goes
// to files in <outDir> and everything else to <outDir>/report.json, for pytest to score.
//
// usage: node sdk_http.mjs <base_url http://...> <outDir> <text> <file.wav>
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ElevenLabsClient } from "@elevenlabs/elevenlabs-js";

const [baseUrl, outDir, text, wavPath] = process.argv.slice(2);
const GEORGE = "JBFqnCBsd6RMkjVDRZzb";
const client = new ElevenLabsClient({ apiKey: "x", baseUrl });

async function collect(stream) {
  const chunks = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk));
  return Buffer.concat(chunks);
}

const report = {};

const converted = await client.textToSpeech.convert(GEORGE, {
  text,
  modelId: "eleven_multilingual_v2",
  outputFormat: "mp3_44100_128",
});
writeFileSync(join(outDir, "convert.mp3"), await collect(converted));

const streamed = await client.textToSpeech.stream(GEORGE, {
  text,
  modelId: "eleven_flash_v2_5",
  outputFormat: "mp3_44100_128",
});
writeFileSync(join(outDir, "stream.mp3"), await collect(streamed));

const timed = await client.textToSpeech.convertWithTimestamps(GEORGE, {
  text,
  modelId: "eleven_multilingual_v2",
  outputFormat: "pcm_22050",
});
writeFileSync(join(outDir, "timestamps.pcm"), Buffer.from(timed.audioBase64, "base64"));
report.timestamps = {
  characters: timed.alignment.characters.join(""),
  lastEnd: timed.alignment.characterEndTimesSeconds.at(-1),
  normalized: timed.normalizedAlignment.characters.length,
};

const file = new Blob([readFileSync(wavPath)], { type: "audio/wav" });
report.stt = await client.speechToText.convert({ file, modelId: "scribe_v2", diarize: true });

const voice = await client.voices.get(GEORGE);
report.voice = { voiceId: voice.voiceId, name: voice.name, labels: voice.labels };
const found = await client.voices.search({ search: "rachel", pageSize: 5 });
report.search = { ids: found.voices.map((v) => v.voiceId), totalCount: found.totalCount };
report.defaultSettings = await client.voices.settings.getDefault();
const user = await client.user.get();
const subscription = await client.user.subscription.get();
report.user = { tier: user.subscription.tier, limit: subscription.characterLimit };

writeFileSync(join(outDir, "report.json"), JSON.stringify(report));
