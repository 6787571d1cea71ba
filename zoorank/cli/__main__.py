"""``python -m zoorank.cli``: the ``zoorank`` command (the tests and benchmarks start it so)."""

from zoorank.cli import main

main()
