"""Management plane: what the administrator says, checked before anything touches a kernel.

Contract: ``spec`` holds the typed, immutable network spec and its loading and validation (pure:
no kernel, no network); every problem is reported at once with FILE:LINE:COL and the spec path.
``cli`` (Typer + Rich) and ``api`` (REST) are the user-facing edges and may use every plane.
"""
