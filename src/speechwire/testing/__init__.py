"""Test support that benchmarks use too: a fault-injecting loopback proxy and a real server process.

It sits at the top of the layers: it may start servers and drive clients, and nothing in
``src/`` imports it except ``bench/``. It knows nothing of pytest (fixtures stay in ``tests/``).
"""
