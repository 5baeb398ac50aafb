"""Test support that benchmarks use too: a fault-injecting loopback proxy, a real server process,
and a cluster of them behind HAProxy with Redis (``cluster``).

It sits at the top of the layers: it may start servers and drive clients, and nothing in
``src/`` imports it except ``bench/``. It knows nothing of pytest (fixtures stay in ``tests/``).
"""
