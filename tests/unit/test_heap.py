import gc
import weakref

from deployments.heap import freeze_startup_heap


class Node:
    pass


def test_freeze_collects_startup_garbage_then_exempts_the_survivors():
    garbage = Node()
    garbage.self = garbage  # a cycle only the collector frees
    dead = weakref.ref(garbage)
    del garbage
    alive = Node()
    try:
        frozen = freeze_startup_heap()
        assert dead() is None  # collected before the freeze, not frozen forever
        # Only a count: other threads of the test process may free frozen objects or freeze more
        # before a second reading, so the survivor check below is the proof.
        assert frozen > 0
        assert not any(obj is alive for obj in gc.get_objects())  # out of the collector's generations
    finally:
        gc.unfreeze()  # the test process must keep collecting normally
    assert any(obj is alive for obj in gc.get_objects())
