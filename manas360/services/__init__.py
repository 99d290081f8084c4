"""Domain services: they speak the domain, own transactions and raise `manas360.errors`."""
