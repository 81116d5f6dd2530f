"""The device graph: the one intermediate representation between the planes.

Contract: frozen, diffable, JSON-serialisable data (namespaces, devices, links, routes, neighbours,
rules) with stable names. The control plane produces it, every data plane consumes it, traces walk
it. Data only: no I/O and no behaviour beyond validation and (de)serialisation.
"""
