# The floors of the core hold (issue 24): a test over the built objects.
TESTS += tests/layers/check-layers.sh
EXTRA_DIST += tests/layers/check-layers.sh tests/layers/floors.txt tests/layers/debt.txt
