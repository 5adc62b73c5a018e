"""Protocol faces: the only code that knows a server exists."""
