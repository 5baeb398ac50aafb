"""Benchmarks behind ``speechwire bench …``, the word error rate that scores them and the tests,
and the Chromium driver the browser tests share (``browser``).

Each module measures one thing against a real server over loopback and prints the table that
``docs/performance.md`` quotes with its command; ``harness`` holds what they all do alike
(reach or start a server, in-process or a ``testing`` process, percentiles, tables, JSON).
``wer`` is pure text scoring and imports nothing of speechwire. Only ``cli.py`` and the tests
import this package; it drives servers through their public start-up and wire protocols and
knows nothing of how the server is built inside.
"""
