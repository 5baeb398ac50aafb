// speechwire's browser parts, one import:
//   import { TTSPlayer, TTSClient, MicCapture, MicTranscriber, Connection,
//            TranscriptView, StatusIndicator, LatencyPanel } from "/web/speechwire.js";
export { Connection, State, backoffDelay, mintToken, tokenUrl } from "./connection.js";
export { TTSPlayer, base64ToInt16, int16ToBase64 } from "./player.js";
export { TTSClient } from "./tts.js";
export { advanceVoiced, decide, RETRY_TABLE } from "./wire.js";
export { MicCapture, MicTranscriber } from "./mic.js";
export { TranscriptView } from "./transcript.js";
export { StatusIndicator } from "./status.js";
export { LatencyPanel, measureRoundTrip, percentile } from "./latency.js";
