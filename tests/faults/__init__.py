"""Fault injection for the history-checked fault test: cluster, proxy, nemesis, checker."""
