"""Unit tests of the pure core and the small shell pieces: no network, no sleeps."""
