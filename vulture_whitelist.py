"""Names vulture (``make lint``: ``vulture src tests vulture_whitelist.py --min-confidence 60``)
cannot see used: they are used by a framework or a library by name, or are public API for users.

Every entry says who uses it. A name that is simply unused does not belong here: delete the code.
"""

# ruff: noqa
_: object

# pydantic / pydantic-settings: class configuration and validators, called by the model machinery.
_.model_config
_._ints_are_numbers
_._schedule_range
_._whole_floats
_._blank_is_absent
_._drop_elevenlabs_placeholder  # config.Settings: .env.example's ElevenLabs placeholder counts as unset
cls  # first argument of @field_validator classmethods

# Wire fields parsed from clients (the protocol accepts them; local engines ignore them).
_.style
_.use_speaker_boost
_.sync_alignment
_.apply_text_normalization
_.pronunciation_dictionary_locators
_.num_speakers
_.tag_audio_events
_.filename
_.next_text
include_total_count  # GET /v2/voices query parameter, accepted as the SDK sends it

# FastAPI routes: registered by decorator, called by the framework.
_.metrics_endpoint
_.healthz
_.search_voices
_.default_settings
_.user_subscription
_.stream_with_timestamps
_.multi_stream_input
_.stream_input

# Attributes set on third-party objects, read by the library.
_.bit_rate  # PyAV codec context
_.pts  # PyAV frame
_.intra_op_num_threads  # onnxruntime SessionOptions
_.inter_op_num_threads
_.log_severity_level
_.should_exit  # uvicorn Server

# pytest and test doubles: module marks, fixtures requested for their effect, handler overrides.
pytestmark
trusted  # fixture: trusts the test CA in the process
_.log_message  # http.server.BaseHTTPRequestHandler override
_.on_started  # pipecat event handler, registered by decorator

# Public client API for applications (documented in README / docs/design.md).
_.keep_alive
_.chunk_gaps

# A reference kept so the running task is not garbage-collected (asyncio keeps only weak ones).
_.error_sent

