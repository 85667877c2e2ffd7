"""Tests of the sensor package."""
