import gc

from serving.common.heap import freeze_loaded_heap


def test_loaded_objects_are_frozen_out_of_later_collections():
    loaded = [[n] for n in range(1000)]  # long-lived, as a loaded model's objects are
    try:
        assert freeze_loaded_heap() >= len(loaded)
        assert gc.get_freeze_count() >= len(loaded)
        assert not any(o is loaded for o in gc.get_objects())  # frozen objects are not the collector's concern
    finally:
        gc.unfreeze()
