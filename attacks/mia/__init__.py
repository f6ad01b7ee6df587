"""Membership inference attacks: a template base (base.py) and one file per per-sample score."""
