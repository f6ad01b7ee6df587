"""Model inversion / concept recovery: class-embedding inversion and the relearning attack."""
