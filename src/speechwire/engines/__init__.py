"""Speech engines behind protocols, a registry, and the policy that schedules their work.

Knows nothing of sockets or of the wire protocol.
"""
