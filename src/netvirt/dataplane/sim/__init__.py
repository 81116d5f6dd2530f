"""The simulated data plane: executes device graphs on real packet bytes, deterministically.

Contract: the oracle every other backend is checked against; no I/O, no privileges. Packet
filtering runs on the classifiers of ``netvirt.dataplane.sim.classify`` (linear first-match, the
reference, and the compiled tuple-space classifier, proven to give identical verdicts).
"""
