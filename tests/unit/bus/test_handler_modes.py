"""What a service hands the runtime: its handler in one of three modes, and a frozen RuntimeConfig (no broker)."""
import dataclasses

import pytest

from services.bus import Batched, PerRecord, RawBatch, RuntimeConfig, ServiceRuntime, Ticker


def test_a_bare_handler_is_refused_before_anything_is_opened():
    with pytest.raises(TypeError, match="PerRecord"):
        ServiceRuntime(None, "my-service", lambda message: [])         # type: ignore[arg-type]


def test_topics_are_kept_as_a_tuple_and_a_single_name_is_refused():
    assert RuntimeConfig(topics=["inference.predictions"]).topics == ("inference.predictions",)
    assert RuntimeConfig().topics is None                               # what the catalogue says it consumes
    with pytest.raises(TypeError, match="not one name"):
        RuntimeConfig(topics="inference.predictions")


def test_the_config_is_frozen_and_its_defaults_are_the_runtime_s_own():
    config = RuntimeConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.batch_size = 1                                           # type: ignore[misc]
    assert (config.transactional, config.batch_size, config.poll_timeout_s, config.ticker) == (False, 500, 0.5, None)
    assert Ticker(lambda: []).every_s == 1.0


def test_a_service_that_drops_what_an_aborted_transaction_changed_may_handle_the_batch_again():
    assert not RuntimeConfig().rewinds
    assert RuntimeConfig(rewindable=True).rewinds
    assert RuntimeConfig(on_aborted=lambda: None).rewinds


def test_offload_belongs_to_a_per_record_handler_only():
    assert PerRecord(print, offload=True).offload
    assert not hasattr(Batched(print), "offload") and not hasattr(RawBatch(print), "offload")
