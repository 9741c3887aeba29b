"""validate component: `component.py` is the KFP wrapper, `logic.py` the plain functions."""
