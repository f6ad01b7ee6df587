"""Rendering of stored result records: leaderboard tables (and, later, audit reports)."""
