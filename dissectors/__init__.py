"""Pure protocol dissectors: bytes in, typed values out. No I/O, no clocks, no addresses."""
