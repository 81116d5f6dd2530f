"""Data planes: interchangeable backends that realise a host's device graph.

Contract (``api.Backend``): ``capabilities()`` is consulted at plan time; ``apply(graph)`` is
idempotent and converges to exactly that graph; ``realized()`` reads back what exists;
``teardown()`` removes everything the backend made and nothing else. ``sim`` executes graphs on real
bytes and is the oracle for the others.
"""
