"""What gatewayd's tests and scripts share; not part of the product (supervisor never imports it).

Installed by `pip install -e '.[dev]'` (what `make` runs), so tests and scripts import it by name.
"""
