"""netvirt: network virtualization you can trace.

The planes are the sub-packages: ``management`` (spec, CLI, REST), ``control`` (compile, store,
agents), ``graph`` (the device graph, the contract between planes), ``environments`` (stack
layers), ``dataplane`` (backends), ``trace`` (walkthroughs and verification) and ``wire`` (packet
codecs, the leaf). See docs/architecture.md for the import rules.
"""

__version__ = "0.1.0"
