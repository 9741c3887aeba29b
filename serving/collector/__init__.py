"""The feedback collector service: HTTP (native and Segment-compatible) into the durable event log."""
