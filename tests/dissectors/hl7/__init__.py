"""Tests for the HL7 v2 over MLLP dissector."""
