"""Audio formats, codecs, resampling and character timing. Knows nothing of sockets or engines."""
