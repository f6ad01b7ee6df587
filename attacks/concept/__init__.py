"""Concept attacks on the text track: prompt attacks, concept inversion, un-erasing probes."""
