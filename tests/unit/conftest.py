"""Every warning is an error in the unit tests (STYLE.md: "Run the Amaranth unit tests with
PYTHONWARNINGS=error").

Legacy Amaranth APIs (``reset=``, ``hdl.Memory``, ``add_sync_process``, ...) warn with a
``DeprecationWarning`` and still work, so only an error keeps them out. A warning can come from
three places, and each is made an error:

- importing a test module and the ``hw/`` modules it pulls in (deprecated names are looked up at
  import), made errors by :func:`pytest_make_collect_report`;
- running a test, by a ``filterwarnings("error")`` mark on each item (:func:`pytest_itemcollected`);
  a test's own ``filterwarnings`` marks still come after it, for a warning a test expects;
- ``UnusedElaboratable``, which Amaranth emits from ``__del__`` of a block that was built and never
  elaborated. Raised there, the error is "unraisable": pytest reports it as a
  ``PytestUnraisableExceptionWarning``, itself an error under the mark. :func:`_collect_garbage`
  collects after each test, so a block kept alive by a reference cycle fails the test that built
  it, not a later one or none. (Amaranth keeps this warning silent until the process has
  elaborated its first block.)

Only ``tests/unit/``: the cosimulation tests load cocotbext-axi, which emits deprecation warnings
under cocotb 2.1 that are not ours to fix. This file's hooks see only the items and modules of this
directory.
"""

import gc
import warnings

import pytest


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return (yield)


def pytest_itemcollected(item):
    item.add_marker(pytest.mark.filterwarnings("error"), append=False)


@pytest.fixture(autouse=True)
def _collect_garbage():
    # What existed before the test is set aside (gc.freeze), so the collection after it scans only
    # what the test made: a full collection of the whole heap would add ~70 ms to every test.
    gc.freeze()
    yield
    gc.collect()
    gc.unfreeze()
