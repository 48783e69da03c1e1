"""The async core: one module per concern. AsyncExperimentManager (batchling/manager.py) is
its facade, and the operations' reference documentation."""
