"""Suite-wide pytest hooks."""


def pytest_collection_modifyitems(config, items):
    """Longest first: the kernel-peer tests, then the other slow and system ones, then the other
    cosimulations, then the rest, each group in its collected order. With several workers
    (``make test`` runs pytest-xdist, which hands tests out in this order) the short tests fill
    the end of the run instead of one long test running on its own while the others idle."""
    def rank(item):
        if item.get_closest_marker("peer"):
            return 0
        if item.get_closest_marker("slow") or item.get_closest_marker("system"):
            return 1
        if item.get_closest_marker("cosim"):
            return 2
        return 3
    items.sort(key=rank)
