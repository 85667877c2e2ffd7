"""Outputs for existing security stacks: Suricata EVE JSON and Zeek dicom.log."""
