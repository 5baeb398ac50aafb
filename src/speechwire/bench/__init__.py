"""Benchmarks behind ``speechwire bench …`` and the word error rate that scores them and the tests.

Each module measures one thing against a real server over loopback (started in-process with
``server.runner.start_server``, or a ``speechwire serve`` process from ``testing/`` when the
benchmark must kill it) and prints the table that ``docs/performance.md`` quotes with its command.
``wer`` is pure text scoring and imports nothing of speechwire. Nothing below ``cli.py`` imports
this package except the tests (for ``wer``); it knows nothing of how the server is built inside.
"""
