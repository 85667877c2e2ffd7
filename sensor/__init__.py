"""The stateful side of the sensor: capture, decoding, flows, streams, policy and output."""

__version__ = "0.1.0"
