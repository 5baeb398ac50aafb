"""Prometheus metrics: what an operator watches to know the service is fast and healthy.

One registry per app (not the process-global one), so several servers in one process (tests,
benchmarks) keep separate counts. Exposed at ``GET /metrics``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.sessions_open = Gauge(
            "speechwire_sessions_open", "Open WebSocket sessions.", ["kind"], registry=r
        )
        self.free_slots = Gauge(
            "speechwire_free_session_slots",
            "Sessions this replica would admit now, per engine kind (tts, stt) and server-wide "
            "(server): cap minus open, 0 while draining. What a balancer or autoscaler steers by.",
            ["kind"],
            registry=r,
        )
        self.sessions = Counter(
            "speechwire_sessions", "WebSocket sessions admitted.", ["kind", "backend"], registry=r
        )
        self.refused = Counter(
            "speechwire_sessions_refused",
            "Connections refused before a session started.",
            ["kind", "reason"],
            registry=r,
        )
        self.errors = Counter(
            "speechwire_errors",
            "Errors sent to clients, by protocol error type.",
            ["kind", "error"],
            registry=r,
        )
        self.tts_first_audio = Histogram(
            "speechwire_tts_time_to_first_audio_seconds",
            "From the text being due (flush, schedule, end) to its first audio sent.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.stt_final = Histogram(
            "speechwire_stt_end_of_speech_to_final_seconds",
            "From the arrival of the audio where speech ended to the committed transcript sent.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.audio_in = Counter(
            "speechwire_audio_in_seconds", "Audio received for transcription.", registry=r
        )
        self.audio_out = Counter("speechwire_audio_out_seconds", "Audio synthesised and sent.", registry=r)
        self.queue_wait = Histogram(
            "speechwire_engine_queue_wait_seconds",
            "Time an engine call waited for a worker.",
            ["pool"],
            buckets=(0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )
