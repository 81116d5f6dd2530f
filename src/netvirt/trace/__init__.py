"""Traces: a packet walked hop by hop, each hop labelled with mode, system level and technique.

Contract: ``Trace(disposition, hops, anomalies)`` with ``Hop(step, mode, level, technique, device,
namespace, action, packet)``; actions are a closed enum. Renderers (table, markdown, json, pcap) are
pure; the JSON form is a documented public interface (docs/trace.md).
"""
