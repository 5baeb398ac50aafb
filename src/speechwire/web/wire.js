// The wire format in one place for the browser: the frames the modules send, the resume rule,
// and the retry table — the same as Python's protocol/tts_client.py, multi_client.py,
// stt_client.py and retry.py (tests/test_wire_constants.py runs both and compares).
//
// Policies, each with its reason (the Python docstrings say the same):
// - voiced characters: each non-space character of a chunk's alignment voices the next non-space
//   character sent, its whitespace only whitespace sent — exact for our server (alignment
//   concatenates to the text sent), and right for an upstream that drops or adds whitespace;
// - resume sends exactly the text after the voiced part, in order;
// - retry: an error type in the table decides; otherwise the close code; unknown codes retry
//   (a network fault). Each row's reason stands beside it in protocol/retry.py;
// - backoff: the ceiling doubles from 200 ms to 8 s and each delay is uniform in [0, ceiling]
//   ("full jitter"), so clients cut by one fault spread out instead of returning together.

// BEGIN RETRY_TABLE (JSON: read by tests/test_wire_constants.py)
export const RETRY_TABLE = {
  "errors": {
    "internal_error": true,
    "transcriber_error": true,
    "upstream_error": true,
    "resource_exhausted": true,
    "rate_limited": true,
    "service_unavailable": true,
    "queue_overflow": true,
    "session_time_limit_exceeded": true,
    "input_timeout_exceeded": false
  },
  "closeCodes": {
    "1000": true,
    "1001": true,
    "1006": true,
    "1011": true,
    "1012": true,
    "1013": true,
    "1003": false,
    "1007": false,
    "1008": false,
    "1009": false
  }
};
// END RETRY_TABLE

// BEGIN BACKOFF (JSON: read by tests/test_wire_constants.py)
export const BACKOFF = { "initialMs": 200, "maxMs": 8000, "factor": 2 };
// END BACKOFF

/** Delay (ms) before retry `attempt` (0 first): uniform in [0, min(maxMs, initialMs·factor^attempt)]. */
export function backoffDelay(attempt, { initialMs = BACKOFF.initialMs, maxMs = BACKOFF.maxMs, random = Math.random } = {}) {
  return random() * Math.min(maxMs, initialMs * BACKOFF.factor ** attempt);
}

/** "retry" or "fail" after a close with `code` (null: none) and the last error type sent. */
export function decide(code, error = null) {
  if (error != null && Object.hasOwn(RETRY_TABLE.errors, error)) return RETRY_TABLE.errors[error] ? "retry" : "fail";
  const retry = RETRY_TABLE.closeCodes[String(code ?? 1006)];
  return retry === false ? "fail" : "retry";
}

/** The error type of a server frame: TTS `{error, message}`, STT `{message_type: "…error…", error}`. */
export function errorType(msg) {
  if (typeof msg.error === "string" && msg.message_type) return msg.message_type;
  return typeof msg.error === "string" ? msg.error : null;
}

const isSpace = (c) => /\s/.test(c);

/** Where the unvoiced rest of `sent` starts once `chars` (a chunk's alignment) are voiced. */
export function advanceVoiced(sent, voiced, chars) {
  for (const c of chars.join("")) {
    if (isSpace(c)) {
      if (voiced < sent.length && isSpace(sent[voiced])) voiced += 1;
      continue;
    }
    while (voiced < sent.length && isSpace(sent[voiced])) voiced += 1;
    voiced = Math.min(voiced + 1, sent.length);
  }
  return voiced;
}

/** A chunk's alignment characters: `alignment`, else `normalizedAlignment`. */
export function alignedChars(msg) {
  return (msg.alignment || msg.normalizedAlignment)?.chars ?? null;
}

export const contextOf = (msg) => msg.contextId ?? msg.context_id;
export const isFinal = (msg) => Boolean(msg.isFinal || msg.is_final);

// ---- TTS frames (stream-input and multi-stream-input) ----

/** A text frame; `contextId` for multi-stream-input, `flush` to generate now. */
export function textFrame(text, { contextId = null, flush = false, voiceSettings = null } = {}) {
  const frame = { text };
  if (contextId != null) frame.context_id = contextId;
  if (flush) frame.flush = true;
  if (voiceSettings) frame.voice_settings = voiceSettings;
  return frame;
}

/** The first message of a stream or context: settings, and the conventional single space. */
export const initFrame = ({ contextId = null, voiceSettings = null } = {}) => textFrame(" ", { contextId, voiceSettings });
/** multi-stream-input's per-context keep-alive: an empty text resets that context's clock. */
export const keepAliveFrame = (contextId) => ({ context_id: contextId, text: "" });
export const closeContextFrame = (contextId) => ({ context_id: contextId, close_context: true });
export const closeSocketFrame = () => ({ close_socket: true });

// ---- STT frames ----

/** The realtime STT client's one message: audio (base64, maybe empty), maybe a commit. */
export function audioChunkFrame(audioBase64, { sampleRate = null, commit = false, previousText = null } = {}) {
  const frame = { message_type: "input_audio_chunk", audio_base_64: audioBase64, commit };
  if (sampleRate != null) frame.sample_rate = sampleRate;
  if (previousText) frame.previous_text = previousText;
  return frame;
}
